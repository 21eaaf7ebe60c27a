//! End-to-end benchmarks on the local control plane, against the real `sip run` binary:
//! `just bench-e2e` (the full configuration) or `sip-bench --quick` (the small one CI runs so it
//! cannot rot; figures are printed, never asserted). `--sip PATH` names the operator binary
//! (default `target/release/sip`, then `target/debug/sip`); `--predecessor DIR` the Go
//! predecessor's source and build script (default `../shared/predecessor`), built first: without
//! it the bench fails rather than compare with nothing. `--side-by-side`: only the comparison;
//! `--only warm,burst` (any of pools, warm, burst): only those, without the comparison.
//!
//! Prints: creation-to-Ready of a 3 + 5 cluster over pools of growing size; the API requests
//! that took, by verb, from the operator's own client metrics and from kube-apiserver's
//! `apiserver_request_total`, against the floor (one label patch per host, one apply per child,
//! one status write per phase); the raw latency of a label patch;
//! clusters created one after another on a warm operator and a burst created at once, each with
//! requests per cluster by verb; the critical path of a warm cluster replayed by the bench's own
//! client (`replay.rs`) next to the warm median; what host status churn and pokes of Ready
//! clusters cost the warm operator (`steady.rs`); the operator's peak RSS and CPU time; then the
//! same two workloads side by side with the predecessor, each operator on a fresh control plane
//! (`side_by_side.rs`), and the ratios.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;
use sip::api::baremetalhost::{BmcDetails, SecretReference};
use sip::api::{BareMetalHost, BareMetalHostSpec, Phase, SIPCluster};
use sip_envtest::{ControlPlane, binaries::repo_root, create_namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod predecessor;
mod replay;
mod side_by_side;
mod steady;

struct Config {
    pools: Vec<usize>,
    /// Clusters created at once in the burst.
    clusters: usize,
    /// Hosts of the warm sequence's pool, and how many clusters it creates one after another.
    warm_hosts: usize,
    warm_clusters: usize,
    patches: usize,
    sip: PathBuf,
    /// The predecessor's source and build script (`../shared/predecessor`).
    predecessor: PathBuf,
    side_by_side: side_by_side::Workloads,
    /// `--side-by-side`: only the comparison with the predecessor.
    only_side_by_side: bool,
    only: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sip-bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config() -> Result<Config> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--pools 100,10000`: only these pool sizes.
    let pools: Option<Vec<usize>> = match args.iter().position(|a| a == "--pools") {
        Some(i) => Some(
            args.get(i + 1)
                .context("--pools needs sizes, e.g. 100,10000")?
                .split(',')
                .map(|n| n.parse().context("--pools: a number"))
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    let sip = match args.iter().position(|a| a == "--sip") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--sip needs a path")?),
        None => {
            let release = repo_root().join("target/release/sip");
            if release.exists() {
                release
            } else {
                repo_root().join("target/debug/sip")
            }
        }
    };
    anyhow::ensure!(
        sip.exists(),
        "{} missing: cargo build --release --bin sip",
        sip.display()
    );
    let predecessor = match args.iter().position(|a| a == "--predecessor") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--predecessor needs a directory")?),
        None => repo_root().join("../shared/predecessor"),
    };
    let mut config = if quick {
        Config {
            pools: vec![100],
            clusters: 5,
            warm_hosts: 100,
            warm_clusters: 3,
            patches: 20,
            sip,
            predecessor,
            side_by_side: side_by_side::Workloads {
                warm_hosts: 100,
                warm_clusters: 3,
                burst_clusters: 5,
            },
            only_side_by_side: false,
            only: None,
        }
    } else {
        Config {
            pools: vec![100, 1_000, 10_000],
            clusters: 50,
            warm_hosts: 1_000,
            warm_clusters: 5,
            patches: 200,
            sip,
            predecessor,
            side_by_side: side_by_side::Workloads {
                warm_hosts: 1_000,
                warm_clusters: 5,
                burst_clusters: 50,
            },
            only_side_by_side: false,
            only: None,
        }
    };
    if let Some(pools) = pools {
        config.pools = pools;
    }
    // `--warm-clusters N`: more warm clusters, for a median that a few noisy samples move less.
    if let Some(i) = args.iter().position(|a| a == "--warm-clusters") {
        let n: usize = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 1)
            .context("--warm-clusters needs a count of at least 2")?;
        config.warm_clusters = n;
        config.side_by_side.warm_clusters = n;
    }
    config.only_side_by_side = args.iter().any(|a| a == "--side-by-side");
    // `--only warm,burst`: only these of the operator-alone workloads (pools, warm, burst),
    // no side by side (what `tools/memories/measure.sh` runs for each memory switched off).
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let only = args
            .get(i + 1)
            .context("--only needs workloads, e.g. warm,burst")?;
        config.only = Some(only.split(',').map(str::to_string).collect());
    }
    Ok(config)
}

async fn run() -> Result<()> {
    let config = config()?;
    println!("sip-bench: operator {}", config.sip.display());
    // Built first: a bench that cannot compare fails before it measures anything.
    let predecessor = predecessor::build(&config.predecessor)?;
    if config.only_side_by_side {
        return side_by_side::run(&config.sip, &predecessor, &config.side_by_side).await;
    }
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    println!(
        "control plane up in {:.1} s ({} cores)",
        cp.startup.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    println!("\n== one 3 + 5 cluster (2+1 control plane per rack, 4+1 workers per server)");
    println!(
        "{:>7} {:>9} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "hosts", "to Ready", "writes", "floor", "ratio", "lists", "peak RSS", "CPU", "pool load"
    );
    let runs = |w: &str| {
        config
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == w))
    };
    let mut floor_latency = None;
    let pools = if runs("pools") {
        &config.pools[..]
    } else {
        &[]
    };
    for &n in pools {
        let figures = one_cluster(&cp, &client, n).await?;
        if floor_latency.is_none() {
            floor_latency =
                Some(raw_patch_latency(&client, &figures.namespace, config.patches).await?);
        }
        println!(
            "{:>7} {:>8.2}s {:>8} {:>7} {:>6.2}x {:>7} {:>7.1}Mi {:>8.2}s {:>9.1}s",
            n,
            figures.to_ready.as_secs_f64(),
            figures.writes,
            figures.floor,
            figures.writes as f64 / figures.floor as f64,
            figures.lists,
            figures.peak_rss_kib as f64 / 1024.0,
            figures.cpu_seconds,
            figures.load.as_secs_f64(),
        );
        println!("        operator requests by verb: {:?}", figures.by_verb);
        if !figures.lists_by_resource.is_empty() {
            println!("        LISTs by resource: {:?}", figures.lists_by_resource);
        }
        println!(
            "        kube-apiserver saw from all clients: {:?}",
            figures.server_by_verb
        );
    }
    if let Some((mean, p99)) = floor_latency {
        println!(
            "\n== raw label patch latency ({} sequential patches): mean {:.2} ms, p99 {:.2} ms",
            config.patches,
            mean * 1000.0,
            p99 * 1000.0
        );
        let floor = 8.0 + 10.0 + 5.0;
        println!(
            "   the floor's time for one cluster ({floor} writes, one after another): {:.0} ms",
            floor * mean * 1000.0
        );
    }

    if runs("warm") {
        warm_sequence(&cp, &client, config.warm_hosts, config.warm_clusters).await?;
    }
    if runs("burst") {
        burst(&cp, &client, config.clusters).await?;
    }
    drop(cp);
    if config.only.is_none() {
        side_by_side::run(&config.sip, &predecessor, &config.side_by_side).await?;
    }
    Ok(())
}

/// Replays of the critical path after the warm sequence (the median is printed).
const REPLAYS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Requests by verb per cluster, from two samples of a counter labelled by verb.
fn per_cluster(after: &str, before: &str, metric: &str, clusters: usize) -> BTreeMap<String, f64> {
    diff(
        &counter_by(after, metric, &["verb"]),
        &counter_by(before, metric, &["verb"]),
    )
    .into_iter()
    .map(|(verb, n)| (verb.to_lowercase(), n as f64 / clusters as f64))
    .collect()
}

fn show(by_verb: &BTreeMap<String, f64>) -> String {
    let total: f64 = by_verb.values().sum();
    let parts: Vec<String> = by_verb.iter().map(|(v, n)| format!("{v} {n:.1}")).collect();
    format!("{total:.1} ({})", parts.join(", "))
}

/// Clusters created one after another on a warm operator: the first pays for the caches'
/// first use, the rest show the steady state.
async fn warm_sequence(
    cp: &ControlPlane,
    client: &kube::Client,
    hosts: usize,
    count: usize,
) -> Result<()> {
    println!(
        "\n== warm: {count} clusters (3 + 5, the three services) one after another over {hosts} hosts"
    );
    let ns = create_namespace(client, "bench-warm").await?;
    create_pool(client, &ns, hosts, |i| i % 10 == 0, (100, 2)).await?;
    create_keys(client, &ns).await?;
    let operator = Operator::start(cp, &config_sip()?, &ns, Scope::Namespace).await?;
    let api: Api<SIPCluster> = Api::namespaced(client.clone(), &ns);
    let mut times = Vec::new();
    let (mut ops_before, mut server_before) = (String::new(), String::new());
    for i in 0..count {
        if i == 1 {
            ops_before = http_get(operator.admin, "/metrics").await;
            server_before = apiserver_metrics(client).await?;
        }
        let name = format!("warm-{i}");
        let (watched, watching) = (api.clone(), name.clone());
        let ready = tokio::spawn(async move {
            await_condition(watched, &watching, |c: Option<&SIPCluster>| {
                c.and_then(|c| c.status.as_ref()?.phase) == Some(Phase::Ready)
            })
            .await
        });
        let port = 30020 + i as u16;
        let mut cluster = three_plus_five(&ns, (port, port))?;
        cluster.metadata.name = Some(name.clone());
        let t0 = Instant::now();
        api.create(&PostParams::default(), &cluster).await?;
        match tokio::time::timeout(Duration::from_secs(120), ready).await {
            Ok(Ok(Ok(_))) => {}
            _ => bail!("warm cluster {name} not Ready within 2 minutes"),
        }
        times.push(t0.elapsed().as_secs_f64());
        // Let its last Events and the Ready check after its own status write land.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ops_after = http_get(operator.admin, "/metrics").await;
    let server_after = apiserver_metrics(client).await?;
    let rest: Vec<f64> = times[1..].to_vec();
    let warm = median(rest.clone());
    let shown: Vec<String> = rest.iter().map(|t| format!("{t:.3}")).collect();
    println!(
        "   first {:.3} s; then {} s; median {:.3} s (the predecessor's: side by side, below)",
        times[0],
        shown.join(", "),
        warm,
    );
    let n = count - 1;
    if n > 0 {
        println!(
            "   per cluster, the operator's requests: {}",
            show(&per_cluster(
                &ops_after,
                &ops_before,
                "sip_api_requests_total",
                n
            ))
        );
        // The bench itself made one create and one watch per cluster.
        let mut server = per_cluster(&server_after, &server_before, "apiserver_request_total", n);
        for verb in ["create", "watch"] {
            if let Some(v) = server.get_mut(verb) {
                *v -= 1.0;
            }
        }
        println!(
            "   per cluster, kube-apiserver's count (less the bench's create and watch; it also counts its metrics scrape): {}",
            show(&server)
        );
    }
    let names: Vec<String> = (0..count).map(|i| format!("warm-{i}")).collect();
    steady::run(client, &ns, &operator, (hosts, &names)).await?;
    // The operator stops first: nothing may react to the replay, or compete with it.
    drop(operator);
    let path = replay::Path::of(client, &ns, &format!("warm-{}", count - 1)).await?;
    let mut replays = Vec::new();
    for run in 0..REPLAYS {
        replays.push(path.replay(client, run).await?);
    }
    let critical = median(replays);
    println!(
        "   critical path ({}; {} requests), replayed by the bench's client: median of {REPLAYS} {:.0} ms; the warm median is {:.2}x it (target 1.5x)",
        replay::ROUNDS,
        path.requests(),
        critical * 1000.0,
        warm / critical
    );
    Ok(())
}

/// `count` 3 + 5 clusters with the three services created at once over a pool that fits them
/// exactly (each host in a rack and on a server of its own), each with its own node ports.
async fn burst(cp: &ControlPlane, client: &kube::Client, count: usize) -> Result<()> {
    anyhow::ensure!(
        count <= 88,
        "the static node-port band holds 88 bursting clusters"
    );
    let hosts = count * 8;
    println!(
        "\n== burst: {count} clusters (3 + 5, the three services) created at once over {hosts} hosts"
    );
    let ns = create_namespace(client, "bench-burst").await?;
    create_pool(client, &ns, hosts, |i| i % 8 < 3, (hosts, 1)).await?;
    create_keys(client, &ns).await?;
    let operator = Operator::start(cp, &config_sip()?, &ns, Scope::Namespace).await?;
    let api: Api<SIPCluster> = Api::namespaced(client.clone(), &ns);
    let ops_before = http_get(operator.admin, "/metrics").await;
    let server_before = apiserver_metrics(client).await?;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let api = api.clone();
        let ns = ns.clone();
        tasks.spawn(async move {
            let port = 30040 + i as u16;
            let mut c = three_plus_five(&ns, (port, port))?;
            c.metadata.name = Some(format!("b{i:03}"));
            api.create(&PostParams::default(), &c).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let mut polls = 0u64;
    loop {
        let all = api.list(&ListParams::default()).await?.items;
        polls += 1;
        let ready = all
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
            .count();
        if ready == count {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("{ready} of {count} clusters Ready after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ops_after = http_get(operator.admin, "/metrics").await;
    let server_after = apiserver_metrics(client).await?;
    let (rss, cpu) = operator.usage();
    println!(
        "   all Ready after {elapsed:.2} s; operator peak RSS {:.1} MiB, CPU {:.2} s",
        rss as f64 / 1024.0,
        cpu
    );
    let ops = per_cluster(&ops_after, &ops_before, "sip_api_requests_total", count);
    println!("   per cluster, the operator's requests: {}", show(&ops));
    let mut server = per_cluster(
        &server_after,
        &server_before,
        "apiserver_request_total",
        count,
    );
    if let Some(v) = server.get_mut("create") {
        *v -= 1.0;
    }
    if let Some(v) = server.get_mut("list") {
        *v -= polls as f64 / count as f64;
    }
    println!(
        "   per cluster, kube-apiserver's count (less the bench's creates and {polls} polls): {}",
        show(&server)
    );
    Ok(())
}

/// The node keys Secret every jump host of the bench names.
async fn create_keys(client: &kube::Client, ns: &str) -> Result<()> {
    let keys = Secret {
        metadata: ObjectMeta {
            name: Some("keys".into()),
            ..Default::default()
        },
        data: Some([("node".to_string(), ByteString(b"key".to_vec()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &keys)
        .await?;
    Ok(())
}

struct Figures {
    namespace: String,
    load: Duration,
    to_ready: Duration,
    writes: u64,
    floor: u64,
    lists: u64,
    by_verb: BTreeMap<String, u64>,
    lists_by_resource: BTreeMap<String, u64>,
    server_by_verb: BTreeMap<String, u64>,
    peak_rss_kib: u64,
    cpu_seconds: f64,
}

/// `n` hosts in `racks` racks, the `is_cp` ones control-plane hosts, `per_server` hosts per
/// physical server (the topology); each with its networkData and BMC Secrets.
async fn create_pool(
    client: &kube::Client,
    ns: &str,
    n: usize,
    is_cp: fn(usize) -> bool,
    (racks, per_server): (usize, usize),
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, ns) = (client.clone(), ns.to_string());
        tasks.spawn(
            async move { create_host(&client, &ns, i, is_cp(i), (racks, per_server)).await },
        );
        // A bounded number in flight: the API server's, not the harness's, speed is measured.
        while tasks.len() >= 32 {
            tasks.join_next().await.context("join")???;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

async fn create_host(
    client: &kube::Client,
    ns: &str,
    i: usize,
    cp: bool,
    (racks, per_server): (usize, usize),
) -> Result<()> {
    let name = format!("host-{i:05}");
    let secret = |suffix: &str, data: Vec<(&str, String)>| Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{suffix}")),
            ..Default::default()
        },
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    let ip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
    let network_data = json!({"networks": [{"id": "oam-ipv4", "link": "oam-ipv4", "type": "ipv4", "ip_address": ip}]});
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    secrets
        .create(
            &pp,
            &secret("nd", vec![("networkData", network_data.to_string())]),
        )
        .await?;
    secrets
        .create(
            &pp,
            &secret(
                "bmc",
                vec![
                    ("username", "admin".into()),
                    ("password", format!("pw-{i}")),
                ],
            ),
        )
        .await?;
    let flavor = if cp { "control-plane" } else { "worker" };
    let mut host = BareMetalHost::new(
        &name,
        BareMetalHostSpec {
            online: Some(true),
            bmc: Some(BmcDetails {
                address: format!(
                    "redfish+https://10.200.{}.{}/redfish/v1/Systems/1",
                    (i / 256) % 256,
                    i % 256
                ),
                credentials_name: format!("{name}-bmc"),
                disable_certificate_verification: false,
            }),
            // The namespace named, as metal3 writes it: the predecessor reads the Secret from
            // there and nowhere else.
            network_data: Some(SecretReference {
                name: Some(format!("{name}-nd")),
                namespace: Some(ns.to_string()),
            }),
            consumer_ref: None,
        },
    );
    host.metadata.labels = Some(
        [
            ("vino.airshipit.org/flavor".to_string(), flavor.to_string()),
            (
                "vino.airshipit.org/rack".to_string(),
                format!("rack-{:03}", i % racks),
            ),
            (
                "vino.airshipit.org/host".to_string(),
                format!("server-{:05}", i / per_server),
            ),
        ]
        .into(),
    );
    Api::<BareMetalHost>::namespaced(client.clone(), ns)
        .create(&pp, &host)
        .await?;
    Ok(())
}

/// The real operator as a child process, its admin server on `port`.
struct Operator {
    child: Child,
    admin: SocketAddr,
}

/// Which SIPClusters and hosts the operator serves.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// The namespace's only: the control plane may hold others' (and such an operator confirms
    /// its claims, as others may choose from the same hosts).
    Namespace,
    /// Every namespace, as the shipped Deployment runs it: the control plane is its alone.
    Everything,
}

impl Operator {
    async fn start(
        cp: &ControlPlane,
        sip: &std::path::Path,
        ns: &str,
        scope: Scope,
    ) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let admin: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = Command::new(sip)
            .args(["run", "--kubeconfig"])
            .arg(&cp.kubeconfig)
            .args(match scope {
                Scope::Namespace => vec!["--host-namespace", ns, "--cluster-namespace", ns],
                Scope::Everything => vec![],
            })
            .args(["--metrics-address", &admin.to_string(), "--log"])
            .arg(std::env::var("SIP_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()))
            .args(["--lease-namespace", ns])
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()?;
        let op = Operator { child, admin };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !http_get(admin, "/readyz")
            .await
            .starts_with("ready: leader\n")
        {
            if Instant::now() > deadline {
                bail!("the operator never became ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(op)
    }

    /// Peak resident memory (KiB) and CPU seconds so far.
    fn usage(&self) -> (u64, f64) {
        usage(self.child.id())
    }
}

/// Peak resident memory (KiB) and CPU seconds so far of process `pid`, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (peak, sip_envtest::control_plane::cpu_seconds_of(pid))
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(address: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Sums a counter's samples by the values of `labels`, from Prometheus text.
fn counter_by(text: &str, metric: &str, labels: &[&str]) -> BTreeMap<String, u64> {
    sum_by(text, metric, labels)
        .into_iter()
        .map(|(key, n)| (key, n as u64))
        .collect()
}

/// The samples of `metric` summed by the values of `labels` (joined by spaces; a histogram's
/// `_sum` or `_count`, or a counter).
fn sum_by(text: &str, metric: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let key: Vec<&str> = labels
            .iter()
            .map(|l| {
                series
                    .split_once(&format!("{l}=\""))
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map_or("", |(v, _)| v)
            })
            .collect();
        *out.entry(key.join(" ").trim().to_string()).or_default() +=
            value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn apiserver_metrics(client: &kube::Client) -> Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// 2+1 control-plane hosts, one per rack, and 4+1 workers, one per server: every bench's nodes.
fn three_plus_five_nodes() -> serde_json::Value {
    json!({
        "ControlPlane": {"labelSelector": {"matchLabels": {"vino.airshipit.org/flavor": "control-plane"}},
                         "topologyKey": "vino.airshipit.org/rack", "count": {"active": 2, "standby": 1}},
        "Worker": {"labelSelector": {"matchLabels": {"vino.airshipit.org/flavor": "worker"}},
                   "topologyKey": "vino.airshipit.org/host", "count": {"active": 4, "standby": 1}}
    })
}

/// The SIPCluster the one-cluster runs create: 2+1 control plane per rack, 4+1 workers per
/// server, the three predecessor services with node ports the API server picks.
fn three_plus_five(ns: &str, worker_ports: (u16, u16)) -> Result<SIPCluster> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "airship.airshipit.org/v1", "kind": "SIPCluster",
        "metadata": {"name": "tenant", "namespace": ns},
        "spec": {
            "nodes": three_plus_five_nodes(),
            "services": {
                "loadBalancerControlPlane": [{"nodeInterfaceId": "oam-ipv4"}],
                "loadBalancerWorker": [{"nodeInterfaceId": "oam-ipv4", "nodePortRange": {"start": worker_ports.0, "end": worker_ports.1}}],
                "jumpHost": [{"nodeInterfaceId": "oam-ipv4", "nodeSSHPrivateKeys": "keys",
                              "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICWscdxRwgcDGWOINiWOm4ptAz9DnOvHs3dyAEWeIoBd bench"]}]
            }
        }
    }))?)
}

async fn one_cluster(cp: &ControlPlane, client: &kube::Client, n: usize) -> Result<Figures> {
    let ns = create_namespace(client, "bench").await?;
    let started = Instant::now();
    create_pool(client, &ns, n, |i| i % 10 == 0, (100, 2)).await?;
    create_keys(client, &ns).await?;
    let load = started.elapsed();
    let operator = Operator::start(cp, &config_sip()?, &ns, Scope::Namespace).await?;

    let ops_before = http_get(operator.admin, "/metrics").await;
    let server_before = apiserver_metrics(client).await?;
    let api: Api<SIPCluster> = Api::namespaced(client.clone(), &ns);
    // Static node ports sit in the band the API server never picks itself (30000-30127 here),
    // so they cannot meet one it chose for another Service.
    let base = 30000 + (n.ilog10() as u16) * 3;
    // Watched, as `kubectl get -w` would: polling would add up to its interval to the figure
    // and its own GETs to the API server's load.
    let ready = tokio::spawn(await_condition(
        api.clone(),
        "tenant",
        |c: Option<&SIPCluster>| c.and_then(|c| c.status.as_ref()?.phase) == Some(Phase::Ready),
    ));
    let t0 = Instant::now();
    api.create(
        &PostParams::default(),
        &three_plus_five(&ns, (base, base + 2))?,
    )
    .await?;
    match tokio::time::timeout(Duration::from_secs(300), ready).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => bail!("{n} hosts: watching for Ready: {e}"),
        Ok(Err(e)) => bail!("{n} hosts: the watch for Ready ended: {e}"),
        Err(_) => {
            let c = api.get("tenant").await?;
            bail!("{n} hosts: not Ready after 5 minutes: {:?}", c.status);
        }
    }
    let to_ready = t0.elapsed();
    // Let the last Events land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ops_after = http_get(operator.admin, "/metrics").await;
    let server_after = apiserver_metrics(client).await?;

    let requests = diff(
        &counter_by(&ops_after, "sip_api_requests_total", &["verb", "resource"]),
        &counter_by(&ops_before, "sip_api_requests_total", &["verb", "resource"]),
    );
    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    for (key, v) in &requests {
        *by_verb
            .entry(key.split(' ').next().unwrap_or("").to_string())
            .or_default() += v;
    }
    // Writes to the objects the operator owns or labels; Events are reported apart.
    let writes: u64 = requests
        .iter()
        .filter(|(k, _)| {
            let mut parts = k.split(' ');
            let verb = parts.next().unwrap_or("");
            let resource = parts.next().unwrap_or("");
            matches!(verb, "create" | "patch" | "update" | "delete") && resource != "events"
        })
        .map(|(_, v)| v)
        .sum();
    // Every LIST, Gathering's of the ledgers included (made only while their watch lags the
    // operator's own writes).
    let lists: u64 = requests
        .iter()
        .filter(|(k, _)| k.starts_with("list "))
        .map(|(_, v)| v)
        .sum();
    // One label patch per host, one apply per child (3 + 3 + 4), one status write per phase
    // (created, Extracting, DeployingInfra, Labeling, Ready) and the finalizer.
    let floor = 8 + 10 + 5 + 1;
    let server = diff(
        &counter_by(&server_after, "apiserver_request_total", &["verb"]),
        &counter_by(&server_before, "apiserver_request_total", &["verb"]),
    );
    let (peak_rss_kib, cpu_seconds) = operator.usage();
    Ok(Figures {
        namespace: ns,
        load,
        to_ready,
        writes,
        floor,
        lists,
        by_verb,
        lists_by_resource: requests
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("list ")?.to_string(), *v)))
            .collect(),
        server_by_verb: server,
        peak_rss_kib,
        cpu_seconds,
    })
}

fn config_sip() -> Result<PathBuf> {
    Ok(config()?.sip)
}

/// Mean and p99 seconds of sequential label patches on one host: the API server's write floor.
async fn raw_patch_latency(client: &kube::Client, ns: &str, n: usize) -> Result<(f64, f64)> {
    let hosts: Api<BareMetalHost> = Api::namespaced(client.clone(), ns);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let patch = json!({"metadata": {"labels": {"bench.sip/round": i.to_string()}}});
        let t = Instant::now();
        hosts
            .patch("host-00001", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / n as f64;
    let p99 = samples[(n * 99 / 100).min(n - 1)];
    Ok((mean, p99))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP apiserver_request_duration_seconds [STABLE] Response latency
apiserver_request_duration_seconds_sum{component="apiserver",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 0.25
apiserver_request_duration_seconds_sum{component="apiserver",resource="secrets",scope="namespace",subresource="",verb="GET",version="v1"} 0.5
apiserver_request_duration_seconds_sum{component="apiserver",resource="sipclusters",scope="resource",subresource="status",verb="APPLY",version="v1"} 0.125
apiserver_request_duration_seconds_count{component="apiserver",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="200",resource="secrets",verb="GET"} 7
"#;

    #[test]
    fn samples_are_summed_by_the_labels_asked_for_and_no_other_metric() {
        let sums = sum_by(
            METRICS,
            "apiserver_request_duration_seconds_sum",
            &["verb", "resource", "subresource"],
        );
        // Two series differ only by scope: one key. An empty last label leaves no space.
        assert_eq!(sums.len(), 2);
        assert_eq!(sums["GET secrets"], 0.75);
        assert_eq!(sums["APPLY sipclusters status"], 0.125);
        // `_sum` is not `_count`, nor `apiserver_request_total` a prefix match of either.
        let counts = counter_by(METRICS, "apiserver_request_total", &["verb"]);
        assert_eq!(counts, BTreeMap::from([("GET".to_string(), 7)]));
    }
}

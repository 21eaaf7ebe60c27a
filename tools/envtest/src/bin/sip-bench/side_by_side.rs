//! sip and the predecessor side by side, in one run: each workload runs once per operator, each
//! on a fresh control plane of its own with the same hosts and the same manifests (the
//! predecessor's: images, static node ports, its two HAProxy templates in ConfigMaps). The warm
//! sequences run interleaved, both control planes up at once, a cluster on one then a cluster
//! on the other, so the machine's changing load falls on both alike; the bursts run one after
//! the other. Beside the times: each side's CPU per warm cluster (kube-apiserver, etcd, the
//! operator) and what all three spent between a creation and its Ready (on two cores, the
//! warm time is about that CPU over how much of it ran at once).
//!
//! Workloads: clusters created one after another on a warm operator (the median of all but
//! the first), and clusters created at once (until the last is Ready). "Ready" is the same
//! for both: the `Ready` condition True, which the predecessor sets at the end of its pass and
//! sip with the Ready phase. Requests are each operator's own count (sip's
//! `sip_api_requests_total`, the predecessor's client-go `rest_client_requests_total`), by
//! HTTP method; sip's Lease renewals are left out (the predecessor runs without leader
//! election, its default) and its Events shown apart (the predecessor records none), so
//! "writes" are the same objects' writes on both sides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sip::api::SIPCluster;
use sip_envtest::{ControlPlane, Layout, create_namespace};

use super::predecessor::{self, Build};
use super::{
    Operator, Scope, counter_by, create_keys, create_pool, diff, http_get, three_plus_five_nodes,
    usage,
};

/// What each operator runs.
pub struct Workloads {
    pub warm_hosts: usize,
    pub warm_clusters: usize,
    pub burst_clusters: usize,
}

#[derive(Clone, Copy)]
enum Contender<'a> {
    Sip(&'a Path),
    Predecessor(&'a Build),
}

impl Contender<'_> {
    fn name(&self) -> &'static str {
        match self {
            Contender::Sip(_) => "sip",
            Contender::Predecessor(_) => "predecessor",
        }
    }
}

/// A running operator of either kind.
enum Running {
    Sip(Operator),
    Predecessor(predecessor::Running),
}

impl Running {
    /// Its own requests so far, by HTTP method.
    async fn requests(&self) -> BTreeMap<String, u64> {
        match self {
            Running::Sip(op) => {
                let text = http_get(op.admin, "/metrics").await;
                let mut out = BTreeMap::new();
                for (key, n) in counter_by(&text, "sip_api_requests_total", &["verb", "resource"]) {
                    let (verb, resource) = key.split_once(' ').unwrap_or((&key, ""));
                    if resource == "leases" {
                        continue;
                    }
                    let method = match verb {
                        // The predecessor tells no story: sip's Events are shown apart.
                        "create" if resource == "events" => "Events",
                        "create" => "POST",
                        "update" => "PUT",
                        "patch" => "PATCH",
                        "delete" | "deletecollection" => "DELETE",
                        _ => "GET",
                    };
                    *out.entry(method.to_string()).or_default() += n;
                }
                out
            }
            Running::Predecessor(p) => {
                let text = http_get(p.metrics, "/metrics").await;
                counter_by(&text, "rest_client_requests_total", &["method"])
            }
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Running::Sip(op) => op.child.id(),
            Running::Predecessor(p) => p.pid(),
        }
    }
}

/// One workload's figures for one operator.
struct Figures {
    /// Seconds: the warm median, or the burst's time to the last Ready.
    seconds: f64,
    /// Requests per cluster by HTTP method.
    per_cluster: BTreeMap<String, f64>,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    /// CPU milliseconds per cluster of kube-apiserver, etcd and the operator (warm only): the
    /// warm time is bounded by what the three spend on the same two cores, so this says where
    /// a cluster's time goes, with less noise than the time itself.
    cpu_per_cluster: BTreeMap<String, f64>,
    detail: String,
}

impl Figures {
    /// Writes per cluster, Events aside.
    fn writes(&self) -> f64 {
        self.per_cluster
            .iter()
            .filter(|(m, _)| !matches!(m.as_str(), "GET" | "Events"))
            .map(|(_, n)| n)
            .sum()
    }
}

pub async fn run(sip: &Path, build: &Build, w: &Workloads) -> Result<()> {
    println!(
        "\n== side by side with the predecessor (each on a fresh control plane; the same hosts and manifests)"
    );
    let warm = format!(
        "warm: {} clusters (3 + 5, three services) one after another over {} hosts",
        w.warm_clusters, w.warm_hosts
    );
    let burst = format!(
        "burst: {} clusters at once over {} hosts",
        w.burst_clusters,
        w.burst_clusters * 8
    );
    for (title, target, is_burst) in [(warm, 0.9, false), (burst, 0.6, true)] {
        println!("   {title}");
        let contenders = [Contender::Sip(sip), Contender::Predecessor(build)];
        let figures = if is_burst {
            let mut figures = Vec::new();
            for contender in contenders {
                figures.push(
                    measure_burst(contender, &build.templates, w.burst_clusters)
                        .await
                        .with_context(|| format!("{}, {}", contender.name(), title))?,
                );
            }
            figures
        } else {
            measure_warm(contenders, &build.templates, w.warm_hosts, w.warm_clusters)
                .await
                .with_context(|| title.clone())?
                .into()
        };
        for (contender, f) in contenders.iter().zip(&figures) {
            println!(
                "     {:<11} {:>7.3} s  {}; writes/cluster {:.1}; requests/cluster {}; peak RSS {:.1} MiB, CPU {:.2} s",
                contender.name(),
                f.seconds,
                f.detail,
                f.writes(),
                show(&f.per_cluster),
                f.peak_rss_mib,
                f.cpu_seconds
            );
            if !f.cpu_per_cluster.is_empty() {
                println!(
                    "     {:<11} CPU per cluster: {}",
                    "",
                    f.cpu_per_cluster
                        .iter()
                        .map(|(who, ms)| format!("{who} {ms:.1} ms"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let ratio = figures[0].seconds / figures[1].seconds;
        println!(
            "     sip / predecessor: {ratio:.2}x the time (target {target}x: {}), {:.2}x the writes",
            if ratio <= target { "met" } else { "not met" },
            figures[0].writes() / figures[1].writes()
        );
    }
    Ok(())
}

fn show(by_method: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = by_method
        .iter()
        .map(|(m, n)| format!("{m} {n:.1}"))
        .collect();
    parts.join(", ")
}

/// A fresh control plane with the contender's CRDs, a namespace holding `hosts` hosts, the
/// jump hosts' key Secret and the predecessor's template ConfigMaps; the operator started.
async fn prepare(
    contender: Contender<'_>,
    templates: &Path,
    hosts: usize,
    layout: (fn(usize) -> bool, usize, usize),
) -> Result<(ControlPlane, kube::Client, String, Running)> {
    let cp = match contender {
        Contender::Sip(_) => ControlPlane::start().await?,
        Contender::Predecessor(build) => {
            ControlPlane::start_with(Layout {
                crds: build.crds.clone(),
                ..Layout::default()
            })
            .await?
        }
    };
    let client = cp.client().await?;
    let ns = create_namespace(&client, "side").await?;
    let (is_cp, racks, per_server) = layout;
    create_pool(&client, &ns, hosts, is_cp, (racks, per_server)).await?;
    create_keys(&client, &ns).await?;
    for (name, key) in [
        ("loadbalancercontrolplane", "loadBalancerControlPlane.cfg"),
        ("loadbalancerworker", "loadBalancerWorker.cfg"),
    ] {
        let text = std::fs::read_to_string(templates.join(key))
            .with_context(|| format!("reading {key}"))?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([(key.to_string(), text)].into()),
            ..Default::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await?;
    }
    let running = match contender {
        // As the predecessor runs, and as sip is shipped: alone with a control plane of its own.
        Contender::Sip(bin) => {
            Running::Sip(Operator::start(&cp, bin, &ns, Scope::Everything).await?)
        }
        Contender::Predecessor(build) => {
            Running::Predecessor(predecessor::Running::start(build, &cp.kubeconfig)?)
        }
    };
    Ok((cp, client, ns, running))
}

/// The manifest both operators get, in the predecessor's schema (which sip's is a superset
/// of): cluster `i` of a run has node ports 30000 + 3i .. 30002 + 3i.
fn manifest(ns: &str, name: &str, i: usize) -> Value {
    let port = 30000 + 3 * i as u16;
    json!({
        "apiVersion": "airship.airshipit.org/v1", "kind": "SIPCluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodes": three_plus_five_nodes(),
            "services": {
                "jumpHost": [{"image": "quay.io/airshipit/jump-host:latest", "nodePort": port,
                              "nodeInterfaceId": "oam-ipv4", "nodeSSHPrivateKeys": "keys",
                              "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICWscdxRwgcDGWOINiWOm4ptAz9DnOvHs3dyAEWeIoBd bench"]}],
                "loadBalancerControlPlane": [{"image": "haproxy:2.3.2", "nodePort": port + 1, "nodeInterfaceId": "oam-ipv4"}],
                "loadBalancerWorker": [{"image": "haproxy:2.3.2", "nodeInterfaceId": "oam-ipv4",
                                        "nodePortRange": {"start": port + 2, "end": port + 2}}]
            }
        }
    })
}

fn clusters(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<SIPCluster>(&()))
}

fn ready(c: &DynamicObject) -> bool {
    c.data["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

async fn create(api: &Api<DynamicObject>, manifest: Value) -> Result<()> {
    let object: DynamicObject = serde_json::from_value(manifest)?;
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// How many of the namespace's clusters are Ready, from a watch (both operators are watched
/// alike, as `kubectl get -w` would; polling would add its interval to the figures).
fn watch_ready(api: &Api<DynamicObject>) -> tokio::sync::watch::Receiver<usize> {
    let (tx, rx) = tokio::sync::watch::channel(0);
    let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut names = BTreeSet::new();
        while let Some(Ok(c)) = stream.next().await {
            if ready(&c) && names.insert(c.name_any()) && tx.send(names.len()).is_err() {
                return;
            }
        }
    });
    rx
}

async fn until_ready(
    seen: &mut tokio::sync::watch::Receiver<usize>,
    count: usize,
    limit: Duration,
) -> Result<()> {
    let waited = tokio::time::timeout(limit, seen.wait_for(|n| *n >= count))
        .await
        .map(|r| r.is_ok());
    match waited {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the watch of the clusters ended"),
        Err(_) => bail!(
            "{} of {count} clusters Ready after {} s",
            *seen.borrow(),
            limit.as_secs()
        ),
    }
}

/// One operator's warm sequence: its control plane, its clusters and what was read before.
struct WarmSide {
    // Dropped first: the operator stops before its control plane does.
    running: Running,
    cp: ControlPlane,
    client: kube::Client,
    ns: String,
    seen: tokio::sync::watch::Receiver<usize>,
    times: Vec<f64>,
    /// CPU seconds the control plane and the operator spent between each creation and its
    /// Ready: above the time itself, the work ran on both cores at once.
    in_window: Vec<f64>,
    requests: BTreeMap<String, u64>,
    cpu: Vec<(String, f64)>,
    server: String,
}

impl WarmSide {
    async fn start(contender: Contender<'_>, templates: &Path, hosts: usize) -> Result<Self> {
        let layout: (fn(usize) -> bool, _, _) = (|i| i % 10 == 0, 100, 2);
        let (cp, client, ns, running) = prepare(contender, templates, hosts, layout).await?;
        let seen = watch_ready(&clusters(&client, &ns));
        Ok(WarmSide {
            cp,
            client,
            ns,
            running,
            seen,
            times: Vec::new(),
            in_window: Vec::new(),
            requests: BTreeMap::new(),
            cpu: Vec::new(),
            server: String::new(),
        })
    }

    /// From here on, what the operator and its control plane do is counted.
    async fn count_from_now(&mut self) -> Result<()> {
        self.requests = self.running.requests().await;
        self.cpu = cpu_by_process(&self.cp, &self.running);
        self.server = super::apiserver_metrics(&self.client).await?;
        Ok(())
    }

    async fn one_cluster(&mut self, i: usize) -> Result<()> {
        let api = clusters(&self.client, &self.ns);
        let total = |cpu: Vec<(String, f64)>| cpu.iter().map(|(_, s)| s).sum::<f64>();
        let cpu0 = total(cpu_by_process(&self.cp, &self.running));
        let t0 = Instant::now();
        create(&api, manifest(&self.ns, &format!("warm-{i}"), i)).await?;
        until_ready(&mut self.seen, i + 1, Duration::from_secs(120)).await?;
        self.times.push(t0.elapsed().as_secs_f64());
        self.in_window
            .push(total(cpu_by_process(&self.cp, &self.running)) - cpu0);
        Ok(())
    }

    async fn figures(self, contender: Contender<'_>) -> Result<Figures> {
        let measured = self.times.len() - 1;
        let after = self.running.requests().await;
        let cpu_per_cluster = cpu_by_process(&self.cp, &self.running)
            .iter()
            .zip(&self.cpu)
            .map(|((who, a), (_, b))| (who.clone(), (a - b) * 1000.0 / measured.max(1) as f64))
            .collect();
        if std::env::var_os("SIP_BENCH_SERVER_TIME").is_some() {
            println!(
                "     {}: kube-apiserver's time per cluster",
                contender.name()
            );
            let server_after = super::apiserver_metrics(&self.client).await?;
            print_server_time(&server_after, &self.server, measured);
        }
        let rest = self.times[1..].to_vec();
        let shown: Vec<String> = rest.iter().map(|t| format!("{t:.3}")).collect();
        let (rss, cpu) = usage(self.running.pid());
        let in_window = super::median(self.in_window[1..].to_vec());
        Ok(Figures {
            seconds: super::median(rest),
            per_cluster: per_cluster(&after, &self.requests, measured),
            peak_rss_mib: rss as f64 / 1024.0,
            cpu_seconds: cpu,
            cpu_per_cluster,
            detail: format!(
                "median (first {:.3} s; then {}); CPU from creation to Ready {:.3} s (median)",
                self.times[0],
                shown.join(", "),
                in_window
            ),
        })
    }
}

/// The warm sequences of both operators, interleaved: both control planes are up at once and
/// the clusters alternate between them (which goes first alternates too), so a change in the
/// machine's load (its neighbours' work moves a median by 10-20% within minutes) falls on both
/// alike instead of on whichever ran during it.
async fn measure_warm(
    contenders: [Contender<'_>; 2],
    templates: &Path,
    hosts: usize,
    count: usize,
) -> Result<[Figures; 2]> {
    let mut sides = Vec::new();
    for contender in contenders {
        sides.push(
            WarmSide::start(contender, templates, hosts)
                .await
                .with_context(|| contender.name())?,
        );
    }
    for i in 0..count {
        if i == 1 {
            for side in &mut sides {
                side.count_from_now().await?;
            }
        }
        for k in [i % 2, 1 - i % 2] {
            sides[k]
                .one_cluster(i)
                .await
                .with_context(|| contenders[k].name())?;
            // Let its last writes land before the next one starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let mut sides = sides.into_iter();
    let (first, second) = (sides.next().unwrap(), sides.next().unwrap());
    Ok([
        first.figures(contenders[0]).await?,
        second.figures(contenders[1]).await?,
    ])
}

async fn measure_burst(
    contender: Contender<'_>,
    templates: &Path,
    count: usize,
) -> Result<Figures> {
    let hosts = count * 8;
    let layout: (fn(usize) -> bool, _, _) = (|i| i % 8 < 3, hosts, 1);
    let (_cp, client, ns, running) = prepare(contender, templates, hosts, layout).await?;
    let api = clusters(&client, &ns);
    let mut seen = watch_ready(&api);
    let before = running.requests().await;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (api, manifest) = (api.clone(), manifest(&ns, &format!("b{i:03}"), i));
        tasks.spawn(async move { create(&api, manifest).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    until_ready(&mut seen, count, Duration::from_secs(600)).await?;
    let seconds = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = running.requests().await;
    let (rss, cpu) = usage(running.pid());
    Ok(Figures {
        seconds,
        per_cluster: per_cluster(&after, &before, count),
        peak_rss_mib: rss as f64 / 1024.0,
        cpu_seconds: cpu,
        cpu_per_cluster: BTreeMap::new(),
        detail: "to the last Ready".into(),
    })
}

/// With `SIP_BENCH_SERVER_TIME` set: kube-apiserver's own account of a warm cluster, by verb
/// and resource (requests and the time it spent serving them, per cluster; the bench's own
/// create and watch included), to see which requests the API server's CPU goes to.
fn print_server_time(after: &str, before: &str, clusters: usize) {
    let labels = ["verb", "resource", "subresource"];
    let sum = |text| super::sum_by(text, "apiserver_request_duration_seconds_sum", &labels);
    let count = |text| super::sum_by(text, "apiserver_request_duration_seconds_count", &labels);
    let (seconds, before_seconds) = (sum(after), sum(before));
    let (counts, before_counts) = (count(after), count(before));
    let mut rows: Vec<(String, f64, f64)> = seconds
        .iter()
        .map(|(key, s)| {
            let per = |now: f64, then: Option<&f64>| {
                (now - then.copied().unwrap_or(0.0)) / clusters.max(1) as f64
            };
            let n = per(
                counts.get(key).copied().unwrap_or(0.0),
                before_counts.get(key),
            );
            (key.clone(), n, per(*s, before_seconds.get(key)) * 1000.0)
        })
        .filter(|(key, n, _)| *n > 0.0 && !key.starts_with("WATCH"))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    for (key, n, ms) in rows {
        println!("       {key:<40} {n:>5.1} requests {ms:>6.2} ms");
    }
}

/// CPU seconds so far of the control plane's processes and the operator.
fn cpu_by_process(cp: &ControlPlane, running: &Running) -> Vec<(String, f64)> {
    let mut all = cp.cpu_seconds();
    all.push(("operator".into(), usage(running.pid()).1));
    all
}

fn per_cluster(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
    clusters: usize,
) -> BTreeMap<String, f64> {
    diff(after, before)
        .into_iter()
        .map(|(m, n)| (m, n as f64 / clusters.max(1) as f64))
        .collect()
}

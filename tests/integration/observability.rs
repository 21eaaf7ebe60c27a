//! Observability end to end: a real Prometheus (Debian's package) scrapes the operator during a
//! run on the local control plane; every dashboard query returns data, every alert expression
//! is evaluated without error, and promtool accepts the scrape and the rules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sip::api::{Phase, SIPCluster};
use sip::metrics::{ApiMetricsLayer, Metrics};
use sip_envtest::Supervised;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{load_hosts, operator_settings, phase, sample_cluster, test_env, wait_for};

const DASHBOARD: &str = include_str!("../../manifests/monitoring/sip-dashboard.json");
const ALERTS: &str = include_str!("../../manifests/monitoring/alerts.yaml");

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET; the body (empty while nothing listens).
async fn http_get(address: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

async fn query(prometheus: SocketAddr, expr: &str) -> Value {
    let body = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )
    .await;
    serde_json::from_str(&body).unwrap_or_else(|_| json!({"status": "unreachable", "body": body}))
}

fn results(answer: &Value) -> &[Value] {
    answer["data"]["result"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The dashboard's expressions with Grafana's variables filled in as a user would see them.
fn dashboard_queries() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(DASHBOARD).unwrap();
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"].as_array().unwrap().iter().map(move |t| {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "5m")
                    .replace("$namespace", ".*")
                    .replace("$cluster", ".*")
                    .replace("$job", ".*");
                (title.clone(), expr)
            })
        })
        .collect()
}

fn write_prometheus_files(dir: &Path, target: SocketAddr) -> PathBuf {
    let rule: Value = serde_norway::from_str(ALERTS).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, serde_norway::to_string(&rule["spec"]).unwrap()).unwrap();
    let config = dir.join("prometheus.yml");
    let text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sip-operator-metrics\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_and_every_dashboard_query_returns_data() {
    let Some(tools) = crate::sandbox::tools() else {
        return;
    };
    let (prometheus, promtool) = (
        PathBuf::from(&tools["prometheus"]),
        PathBuf::from(&tools["promtool"]),
    );
    let env = test_env("observability").await;
    load_hosts(&env).await;

    // The operator, with an instrumented client and its admin server, as `sip run` wires them.
    let metrics = Arc::new(Metrics::new());
    let kubeconfig = kube::config::Kubeconfig::read_from(&env.cp.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = sip::client::build(config, ApiMetricsLayer::new(metrics.clone())).unwrap();
    let (admin, server) = sip::admin::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        None,
        None,
        std::future::pending(),
    )
    .await
    .unwrap();
    tokio::spawn(server);
    let settings = operator_settings(&env.namespace, "observability", &metrics);
    let operator = tokio::spawn(sip::controller::run(
        client,
        settings,
        std::future::pending(),
    ));

    // Prometheus scraping it every second, evaluating the alerts every second.
    let dir = std::env::temp_dir().join(format!(
        "sip-prometheus-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_prometheus_files(&dir, admin);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args: Vec<String> = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={web}"),
    ];
    let mut server = Supervised::spawn(
        "prometheus",
        &prometheus,
        &args,
        dir.join("prometheus.log"),
        None,
    )
    .unwrap();

    // Activity while Prometheus watches: one cluster to Ready, then scaled; one unschedulable.
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    while results(&query(web, "up{job=\"sip-operator-metrics\"} == 1").await).is_empty() {
        assert!(
            server.is_running(),
            "prometheus exited:\n{}",
            server.log_tail(20)
        );
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the operator:\n{}",
            server.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "tenant", |_| {}),
    )
    .await
    .unwrap();
    let too_big = sample_cluster(&env, "too-big", |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 9, "standby": 0});
    });
    api.create(&PostParams::default(), &too_big).await.unwrap();
    wait_for(&api, "tenant", "Ready", |c| phase(c) == Some(Phase::Ready)).await;
    api.patch(
        "tenant",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"nodes": {"Worker": {"count": {"active": 2, "standby": 0}}}}}),
        ),
    )
    .await
    .unwrap();
    wait_for(&api, "tenant", "Ready after scaling", |c| {
        c.is_some_and(|c| {
            phase(Some(c)) == Some(Phase::Ready)
                && c.status.as_ref().unwrap().observed_generation == c.metadata.generation
        })
    })
    .await;
    wait_for(&api, "too-big", "Unschedulable", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "Unschedulable"))
    })
    .await;

    // Every dashboard query returns data (retrying while the last scrapes land).
    let mut missing: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        missing.clear();
        for (title, expr) in dashboard_queries() {
            let answer = query(web, &expr).await;
            assert_eq!(
                answer["status"], "success",
                "{title}: {expr} does not parse: {answer}"
            );
            let has_number = results(&answer)
                .iter()
                .any(|r| r["value"][1].as_str().is_some_and(|v| v != "NaN"));
            if !has_number {
                missing.insert(expr, title);
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        missing.is_empty(),
        "dashboard queries without data: {missing:#?}"
    );
    // The dashboard's variables come from this series.
    let clusters = query(web, "sip_cluster_phase_entered_timestamp_seconds").await;
    let named: Vec<&str> = results(&clusters)
        .iter()
        .filter_map(|r| r["metric"]["sipcluster"].as_str())
        .collect();
    assert!(
        named.contains(&"tenant") && named.contains(&"too-big"),
        "{clusters}"
    );

    // Every alert rule is loaded and evaluated without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules: Value = serde_json::from_str(&http_get(web, "/api/v1/rules").await).unwrap();
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(all.len(), 6, "{rules}");
        let bad: Vec<String> = all
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if bad.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alert rules not healthy: {bad:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // promtool: the scrape follows the exposition format's conventions; the rules are valid.
    let scrape = http_get(admin, "/metrics").await;
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.join("rules.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    server.stop();
    std::fs::remove_dir_all(&dir).ok();
    operator.abort();
}

#[tokio::test]
async fn a_flood_of_made_up_scrape_tokens_costs_a_bounded_number_of_reviews() {
    use sip::scrape_auth::{REVIEWS_AT_ONCE, ScrapeAuth, Verdict};
    let env = crate::common::test_env("scrape-flood").await;
    let kubeconfig = kube::config::Kubeconfig::read_from(&env.cp.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(sip::metrics::Metrics::new());
    let client =
        sip::client::build(config, sip::metrics::ApiMetricsLayer::new(metrics.clone())).unwrap();
    let auth = ScrapeAuth::new(client);
    let reviews = || {
        crate::common::metric_sum(
            &metrics,
            "sip_api_requests_total",
            &[r#"verb="create""#, r#"resource="tokenreviews""#],
        )
    };
    let tokens: Vec<String> = (0..40).map(|i| format!("Bearer made-up-{i}")).collect();
    let verdicts =
        futures::future::join_all(tokens.iter().map(|t| auth.check(Some(t.as_str())))).await;
    let busy = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Unavailable(m) if m.contains("in flight")))
        .count();
    let refused = verdicts
        .iter()
        .filter(|v| **v == Verdict::Unauthenticated)
        .count();
    assert_eq!(busy + refused, tokens.len(), "{verdicts:?}");
    assert!(refused >= 1 && busy >= 1, "{refused} refused, {busy} busy");
    assert!(refused <= REVIEWS_AT_ONCE, "{refused} reviewed at once");
    assert_eq!(reviews(), refused as f64, "one review per verdict");
    // Asked again, the refused tokens cost nothing: refusals are remembered.
    for (token, verdict) in tokens.iter().zip(&verdicts) {
        if *verdict == Verdict::Unauthenticated {
            assert_eq!(auth.check(Some(token)).await, Verdict::Unauthenticated);
        }
    }
    assert_eq!(reviews(), refused as f64, "refusals are remembered");
}

/// `curl --cacert ca https://localhost:<port>/healthz`: the body, or curl's complaint.
fn curl_tls(address: SocketAddr, ca: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", address.port()))
        .arg(format!("https://localhost:{}/healthz", address.port()))
        .output()
        .expect("curl runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_admin_server_speaks_tls_and_serves_a_rotated_certificate_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("sip-metrics-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A certificate as a mounted kubernetes.io/tls Secret gives it, and a copy to trust.
    let issue = |name: &str| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let trusted = dir.join(name);
        std::fs::write(&trusted, made.cert.pem()).unwrap();
        // The key first: the certificate's change is what the server looks for.
        std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
        trusted
    };
    let first = issue("first.pem");
    let tls = sip::admin::tls::acceptor(Some(&dir), vec![]).unwrap();
    let (address, server) = sip::admin::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        None,
        Some(tls),
        std::future::pending(),
    )
    .await
    .unwrap();
    let server = tokio::spawn(server);
    let address: SocketAddr = address;
    let ask = move |ca: PathBuf| tokio::task::spawn_blocking(move || curl_tls(address, &ca));
    assert_eq!(ask(first.clone()).await.unwrap(), Ok("ok\n".to_string()));

    // Plain HTTP is not served on the TLS port.
    let plain = std::process::Command::new("curl")
        .args(["--silent", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/healthz", address.port()))
        .output()
        .expect("curl runs");
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "plain HTTP answered"
    );

    // Rotated (a later modification time): the next handshake shows the new certificate.
    std::thread::sleep(Duration::from_millis(1100));
    let second = issue("second.pem");
    assert_eq!(ask(second).await.unwrap(), Ok("ok\n".to_string()));
    let stale = ask(first)
        .await
        .unwrap()
        .expect_err("the old certificate is gone");
    assert!(stale.contains("certificate"), "{stale}");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

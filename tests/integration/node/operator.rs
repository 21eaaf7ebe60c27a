//! The operator's own Deployment as shipped: both replicas pass their readiness probes, one
//! holds the Lease, and `/metrics` through its Service answers only tokens bound to
//! `sip-metrics-reader`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use super::{cluster, curl, kubectl_ok, node_env, ready, wait_for_pods};

const NS: &str = "sip-system";
const SELECTOR: &str = "app.kubernetes.io/name=sip-operator";

#[tokio::test]
async fn the_shipped_operator_is_ready_holds_its_lease_and_serves_metrics_to_readers_only() {
    let Some(env) = node_env("node-operator").await else {
        return;
    };
    let cluster = cluster().expect("started by node_env");
    let _pods = super::OPERATOR_PODS.read().await;
    // Another test may have deleted the leader's pod: its replacement comes within the limit.
    let pods = wait_for_pods(
        &env.client,
        (NS, SELECTOR),
        "both operator replicas ready",
        Duration::from_secs(120),
        |pods| pods.iter().filter(|p| ready(p)).count() == 2,
    )
    .await;
    let names: Vec<String> = pods
        .iter()
        .filter(|p| ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let lease = Api::<Lease>::namespaced(env.client.clone(), NS)
        .get("sip-operator")
        .await
        .expect("the operator's Lease exists");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        names.contains(&holder),
        "the Lease is held by a ready replica: holder {holder:?}, replicas {names:?}"
    );

    // kubectl logs and exec reach the kubelet through the API server, as on any cluster (the
    // image holds the binary alone: exec runs it).
    let logs = kubectl_ok(cluster, &["logs", "-n", NS, &holder, "--tail=20"]);
    assert!(
        logs.lines().any(|l| l.starts_with('{')),
        "JSON log lines: {logs}"
    );
    let version = kubectl_ok(
        cluster,
        &["exec", "-n", NS, &holder, "--", "/sip", "--version"],
    );
    assert!(
        version.starts_with("sip "),
        "exec runs in the pod: {version}"
    );

    // A reader: a ServiceAccount bound to the shipped ClusterRole; a stranger: one that is not.
    let ns = env.namespace.as_str();
    kubectl_ok(cluster, &["create", "serviceaccount", "reader", "-n", ns]);
    kubectl_ok(cluster, &["create", "serviceaccount", "stranger", "-n", ns]);
    kubectl_ok(
        cluster,
        &[
            "create",
            "clusterrolebinding",
            &format!("{ns}-metrics-reader"),
            "--clusterrole=sip-metrics-reader",
            &format!("--serviceaccount={ns}:reader"),
        ],
    );
    let token = |sa: &str| {
        kubectl_ok(cluster, &["create", "token", sa, "-n", ns])
            .trim()
            .to_string()
    };
    let service = Api::<Service>::namespaced(env.client.clone(), NS)
        .get("sip-operator-metrics")
        .await
        .expect("the metrics Service");
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a cluster IP");
    let url = format!("http://{ip}:8080/metrics");
    let status = |token: &str| {
        let header = format!("Authorization: Bearer {token}");
        curl(&["-o", "/dev/null", "-w", "%{http_code}", "-H", &header, &url]).1
    };
    let reader = token("reader");
    let (ok, body) = curl(&["-H", &format!("Authorization: Bearer {reader}"), &url]);
    assert!(ok, "{url} answers through the Service's cluster IP");
    assert!(
        body.contains("leader_election_master_status{name=\"sip-operator\"}")
            && body.contains("process_resident_memory_bytes"),
        "a reader gets the metrics: {}",
        &body[..body.len().min(500)]
    );
    assert_eq!(status(&reader), "200");
    assert_eq!(
        status(&token("stranger")),
        "403",
        "a token without the role is refused"
    );
    assert_eq!(
        status("not-a-token"),
        "401",
        "a token the API server does not know is refused"
    );
    kubectl_ok(
        cluster,
        &[
            "delete",
            "clusterrolebinding",
            &format!("{ns}-metrics-reader"),
        ],
    );
}

/// The published Dockerfile's last stage, as (instruction, arguments) pairs.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(sip_envtest::binaries::repo_root().join(dockerfile)).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    lines[last_from + 1..]
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(i, a)| (i.to_string(), a.trim().to_string()))
        .collect()
}

/// A file of a docker-archive tar.
fn archive_file(archive: &std::path::Path, name: &str) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} in {}", archive.display());
    out.stdout
}

#[tokio::test]
async fn the_operator_image_built_here_is_laid_out_as_the_dockerfile_says() {
    if cluster().is_none() {
        return;
    }
    use sip_envtest::node::images;
    let archives = images::build(&images::operator_binary().unwrap()).unwrap();
    let archive = std::fs::read_dir(&archives)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("operator-"))
        })
        .expect("the operator's archive");
    let manifest: serde_json::Value =
        serde_json::from_slice(&archive_file(&archive, "manifest.json")).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&archive_file(&archive, config_name)).unwrap();
    let config = &config["config"];

    let stage = final_stage("Dockerfile");
    let want = |instruction: &str| -> String {
        stage
            .iter()
            .find(|(i, _)| i == instruction)
            .unwrap_or_else(|| panic!("the Dockerfile's last stage has no {instruction}"))
            .1
            .clone()
    };
    assert_eq!(config["User"], want("USER"), "the user");
    let json = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
    assert_eq!(
        config["Entrypoint"],
        json(want("ENTRYPOINT")),
        "the entrypoint"
    );
    assert_eq!(config["Cmd"], json(want("CMD")), "the command");
    let port = format!("{}/tcp", want("EXPOSE"));
    assert!(
        config["ExposedPorts"].get(&port).is_some(),
        "{port} exposed: {config}"
    );
    // COPY --from=build /sip /sip: the binary alone, at the same path.
    let copy = want("COPY");
    let target = copy.split_whitespace().last().unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let mut files = Vec::new();
    for layer in layers {
        let tar = archive_file(&archive, layer.as_str().unwrap());
        let mut list = std::process::Command::new("tar")
            .arg("-t")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(list.stdin.as_mut().unwrap(), &tar).unwrap();
        let out = list.wait_with_output().unwrap();
        files.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("/{}", l.trim_start_matches("./")))
                .filter(|l| l != "/"),
        );
    }
    assert_eq!(
        files,
        vec![target.to_string()],
        "the image holds the binary at {target} only"
    );
}

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
    // Another test may have deleted the leader's pod: its replacement comes within the limit.
    let pods = wait_for_pods(
        &env.client,
        NS,
        SELECTOR,
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

//! metal3 updates hosts' status often on a real fleet. A cluster blocked in Gathering must be
//! retried on its backoff schedule, not on every status update of every host.

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{BareMetalHost, SIPCluster};
use sip::metrics::Metrics;

use crate::common::{
    fifth_rack_host, load_hosts, metric_sum, sample_cluster, start_operator_on, test_env, wait_for,
};

/// The operator's LISTs of SIPClusters (Gathering's fresh read of the ledgers, when their
/// watch lags the operator's writes).
fn cluster_lists(metrics: &Metrics) -> u64 {
    let labels = [r#"verb="list""#, r#"resource="sipclusters""#];
    metric_sum(metrics, "sip_api_requests_total", &labels) as u64
}

/// Gathering turns that ended blocked (Unschedulable), from the operator's own counter.
fn blocked_turns(metrics: &Metrics) -> u64 {
    let labels = [r#"phase="Gathering""#, r#"reason="Unschedulable""#];
    metric_sum(metrics, "sip_phase_failures_total", &labels) as u64
}

#[tokio::test]
async fn status_churn_does_not_bypass_a_blocked_clusters_backoff() {
    let env = test_env("churn").await;
    load_hosts(&env).await;
    // The operator's own client, metered: its LISTs of SIPClusters are counted.
    let (operator, metrics) = start_operator_on(env.cp, &env.namespace, "churn").await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Six control-plane hosts, one per rack: the pool has four racks.
    let cluster = sample_cluster(&env, "blocked", |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 3, "standby": 3});
    });
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_for(&api, "blocked", "Unschedulable", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "Unschedulable"))
    })
    .await;
    let before = blocked_turns(&metrics);
    let lists_before = cluster_lists(&metrics);

    // A host's status patched ten times a second for 60 s, as metal3 does while it inspects
    // or provisions: nothing the operator reads changes.
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let started = Instant::now();
    let mut patches = 0u32;
    while started.elapsed() < Duration::from_secs(60) {
        let status = json!({"status": {
            "operationalStatus": "OK",
            "lastUpdated": format!("2026-12-02T00:00:{:02}Z", patches % 60),
            "poweredOn": patches.is_multiple_of(2),
        }});
        hosts
            .patch_status("wk-1", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        patches += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let turns = blocked_turns(&metrics) - before;
    let lists = cluster_lists(&metrics) - lists_before;
    // The backoff doubles from 2 s: within 60 s at most 2+4+8+16+32 s of waits, so 6 turns
    // (the first may be due when the churn starts); a turn per event would be about 600. A
    // blocked turn writes no claim, so the ledgers' cache serves the next one: no LIST.
    eprintln!(
        "figure: {patches} status patches in 60 s, {turns} blocked Gathering turns, {lists} LISTs of SIPClusters"
    );
    assert!(
        turns <= 6,
        "{turns} Gathering turns during {patches} status updates: the churn bypassed the backoff"
    );
    // The backoff still lets it retry within a minute.
    assert!(turns >= 1, "no Gathering turn in 60 s");
    assert_eq!(lists, 0, "LISTs of SIPClusters for {turns} Gathering turns");

    // A change the operator does read still lets the cluster through at once: a fifth rack.
    let at = blocked_turns(&metrics);
    sip_envtest::apply_yaml(
        &env.client,
        &fifth_rack_host(&env.namespace),
        &env.namespace,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while blocked_turns(&metrics) == at {
        assert!(
            Instant::now() < deadline,
            "a new host did not wake the blocked cluster within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator.abort();
}

#[tokio::test]
async fn hosts_created_while_a_blocked_turn_writes_its_status_let_the_cluster_through_at_once() {
    use sip::failpoint::{Pause, Site};
    let env = test_env("churn-woken").await;
    // No hosts yet: the cluster's first turn ends blocked, and its status write is held.
    let pause = std::sync::Arc::new(Pause::new(Site::Status));
    let (operator, _metrics) =
        crate::common::start_operator_with(&env, "woken", |s| s.pause = Some(pause.clone())).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let cluster = sample_cluster(&env, "tenant", |_| {});
    api.create(&PostParams::default(), &cluster).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), pause.reached())
        .await
        .expect("the blocked turn's status write is held");

    // The pool arrives while the turn that found it empty is still writing that it is; the
    // watch has the hosts well before the write is let go.
    load_hosts(&env).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pause.release();
    wait_for(&api, "tenant", "Ready", |c| {
        crate::common::phase(c) == Some(sip::api::Phase::Ready)
    })
    .await;
    // The hosts' events came after the turn read the cache: they let the cluster through its
    // hold, rather than being counted into it.
    // (The namespace is the test's own; the span's field names may carry colour codes.)
    let held: Vec<String> = crate::common::captured_logs()
        .lines()
        .filter(|l| l.contains(&env.namespace) && l.contains("held: nothing it waits for"))
        .map(str::to_string)
        .collect();
    assert!(held.is_empty(), "held after its hosts arrived: {held:?}");
    operator.abort();
}

//! Other writers at the worst moment. The operator is stopped by a failpoint right before it
//! labels the hosts (hosts chosen, read and persisted, services applied; no label written); the
//! test then changes the world and restarts it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{BareMetalHost, HostState, LABEL_CLUSTER_NAME, NodeRole, Phase, SIPCluster};

use crate::common::{TestEnv, labeled_hosts, load_hosts, phase, test_env, wait_for};
use crate::resume::{Operator, resumable};

/// Starts `name` and stops the operator between choosing its hosts and labeling them; returns
/// the chosen control-plane hosts.
async fn stopped_before_labels(env: &TestEnv, api: &Api<SIPCluster>, name: &str) -> Vec<String> {
    let operator = Operator::with_failpoint(env, Some("before:Labeling"));
    api.create(&PostParams::default(), &resumable(env, name))
        .await
        .unwrap();
    operator.crashed("before:Labeling").await;
    let cluster = api.get(name).await.unwrap();
    assert_eq!(phase(Some(&cluster)), Some(Phase::DeployingInfra));
    assert!(
        labeled_hosts(env).await.is_empty(),
        "no label is written before Labeling"
    );
    cluster
        .status
        .unwrap()
        .hosts
        .iter()
        .filter(|h| h.role == NodeRole::ControlPlane)
        .map(|h| h.name.clone())
        .collect()
}

async fn warnings(env: &TestEnv, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn ready(api: &Api<SIPCluster>, name: &str) -> SIPCluster {
    wait_for(api, name, "Ready after the restart", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_host_taken_by_another_writer_before_labeling_is_replaced_not_overwritten() {
    let env = test_env("conflict-taken").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let chosen = stopped_before_labels(&env, &api, "tenant").await;

    // Another writer claims a chosen host meanwhile.
    let taken = &chosen[0];
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let intruder = json!({"metadata": {"labels": {
        LABEL_CLUSTER_NAME: "intruder",
        "sip.airshipit.org/cluster-namespace": "elsewhere",
        "sip.airshipit.org/node-type": "ControlPlane",
    }}});
    hosts
        .patch(taken, &PatchParams::default(), &Patch::Merge(&intruder))
        .await
        .unwrap();

    let operator = Operator::with_failpoint(&env, None);
    let cluster = ready(&api, "tenant").await;
    let status = cluster.status.unwrap();
    let members: Vec<&str> = status
        .hosts
        .iter()
        .filter(|h| h.role == NodeRole::ControlPlane && h.state == HostState::Labeled)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(
        !members.contains(&taken.as_str()),
        "the taken host left the ledger"
    );
    let labels: BTreeMap<String, String> = labeled_hosts(&env).await;
    assert_eq!(
        labels[taken], "intruder",
        "the other writer's labels were kept"
    );
    assert_eq!(labels.values().filter(|v| *v == "tenant").count(), 4);
    let told = warnings(&env, "tenant").await;
    assert!(
        told.iter()
            .any(|(r, m)| r == "HostTaken" && m.contains(taken.as_str())),
        "a Warning Event names the taken host: {told:?}"
    );
    operator.kill();
}

#[tokio::test]
async fn a_host_deleted_before_labeling_is_replaced() {
    let env = test_env("conflict-deleted").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let chosen = stopped_before_labels(&env, &api, "tenant").await;

    let gone = &chosen[0];
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    hosts.delete(gone, &DeleteParams::default()).await.unwrap();

    let operator = Operator::with_failpoint(&env, None);
    let cluster = ready(&api, "tenant").await;
    let status = cluster.status.unwrap();
    assert!(
        status.hosts.iter().all(|h| &h.name != gone),
        "the deleted host left the ledger"
    );
    assert_eq!(
        status
            .hosts
            .iter()
            .filter(|h| h.role == NodeRole::ControlPlane)
            .count(),
        2,
        "a replacement was chosen"
    );
    let told = warnings(&env, "tenant").await;
    assert!(
        told.iter()
            .any(|(r, m)| r == "HostLost" && m.contains(gone.as_str())),
        "a Warning Event names the lost host: {told:?}"
    );
    operator.kill();
}

/// 409s the API server answered to `verb` on `resource`, counted by the metered client.
fn conflicts(metrics: &sip::metrics::Metrics, resource: &str) -> f64 {
    crate::common::metric_sum(
        metrics,
        "sip_api_requests_total",
        &[&format!(r#"resource="{resource}""#), r#"code="409""#],
    )
}

/// `tenant` created under an operator (its client metered, as `sip run` builds it) that holds
/// its first write at `site`; returns once that write is held.
async fn held_at(
    env: &TestEnv,
    site: sip::failpoint::Site,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<sip::failpoint::Pause>,
    std::sync::Arc<sip::metrics::Metrics>,
    Api<SIPCluster>,
) {
    load_hosts(env).await;
    let pause = std::sync::Arc::new(sip::failpoint::Pause::new(site));
    let (operator, metrics) =
        crate::common::start_operator_with(env, "paused", |s| s.pause = Some(pause.clone())).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &resumable(env, "tenant"))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), pause.reached())
        .await
        .unwrap_or_else(|_| panic!("the operator never reached a {site:?} write"));
    (operator, pause, metrics, api)
}

#[tokio::test]
async fn a_host_taken_between_the_decision_and_the_label_patch_meets_a_409_and_is_not_overwritten()
{
    let env = test_env("conflict-409-labels").await;
    // The operator decided to label a host (on the version it read) and holds the patch.
    let (operator, pause, metrics, api) = held_at(&env, sip::failpoint::Site::Labels).await;
    let cluster = api.get("tenant").await.unwrap();
    let ledger = cluster.status.unwrap().hosts;
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    // Every member is taken by another writer: whichever the held patch is for.
    let intruder = json!({"metadata": {"labels": {
        LABEL_CLUSTER_NAME: "intruder",
        "sip.airshipit.org/cluster-namespace": "elsewhere",
        "sip.airshipit.org/node-type": "Worker",
    }}});
    let taken: Vec<String> = ledger.iter().map(|h| h.name.clone()).collect();
    for name in &taken {
        hosts
            .patch(name, &PatchParams::default(), &Patch::Merge(&intruder))
            .await
            .unwrap();
    }
    pause.release();

    // The held patch met a 409, and no taken host was relabeled for tenant.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while conflicts(&metrics, "baremetalhosts") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the held label patch never met a 409"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let labels = labeled_hosts(&env).await;
    for name in &taken {
        assert_eq!(
            labels.get(name).map(String::as_str),
            Some("intruder"),
            "{name}: the other writer's labels were kept: {labels:?}"
        );
    }
    operator.abort();
}

#[tokio::test]
async fn a_status_written_by_another_between_the_read_and_the_write_meets_a_409_and_is_read_again()
{
    let env = test_env("conflict-409-status").await;
    // The operator holds its first status write (the hosts it chose); meanwhile another writer
    // (a replica that lost the Lease, a person) writes the status.
    let (operator, pause, metrics, api) = held_at(&env, sip::failpoint::Site::Status).await;
    let other = json!({"status": {"phase": "Gathering", "hosts": [{
        "name": "cp-4", "namespace": env.namespace, "role": "ControlPlane", "state": "Chosen",
    }]}});
    api.patch_status("tenant", &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();
    pause.release();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while conflicts(&metrics, "sipclusters/status") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the held status write never met a 409"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Decided again from what the other wrote: cp-4, in the ledger it read, is kept or
    // released by a decision, never silently dropped by an overwrite.
    let ready = ready(&api, "tenant").await;
    let history: Vec<String> = ready
        .status
        .unwrap()
        .history
        .iter()
        .map(|h| format!("{h:?}"))
        .collect();
    let labels = labeled_hosts(&env).await;
    let kept = labels.get("cp-4").map(String::as_str) == Some("tenant");
    assert!(
        kept || history.iter().any(|h| h.contains("cp-4")),
        "cp-4 was neither kept nor released by a decision: {history:?}"
    );
    operator.abort();
}

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

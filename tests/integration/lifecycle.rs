//! The operator against the real API server: a SIPCluster from creation to Ready, its hosts
//! labeled, the story in status and Events, and deletion leaving nothing behind.

use std::time::{Duration, Instant};

use crate::common::{
    TestEnv, assert_uninterrupted_story, load_hosts, phase, poke, sample_cluster,
    start_metered_operator, start_operator, test_env, wait_for,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sip::api::{
    BareMetalHost, HostState, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, LABEL_NODE_TYPE, Phase,
    SIPCluster,
};

#[tokio::test]
async fn a_sipcluster_goes_to_ready_and_leaves_nothing_when_deleted() {
    let env = test_env("lifecycle").await;
    load_hosts(&env).await;
    let operator = start_operator(&env);

    let cluster = sample_cluster(&env, "sipcluster-system", |_| {});
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &cluster).await.unwrap();

    let ready = wait_for(&api, "sipcluster-system", "phase Ready", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap();
    let status = ready.status.unwrap();

    // The story, in order, with no second Gathering.
    assert_uninterrupted_story(&status, "fresh cluster");
    let ready_cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready_cond.status.as_str(), ready_cond.reason.as_str()),
        ("True", "ReconciliationSucceeded")
    );
    assert_eq!(ready_cond.observed_generation, ready.metadata.generation);
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(
        (status.control_plane.as_deref(), status.workers.as_deref()),
        (Some("2/2"), Some("2/2"))
    );
    assert!(
        ready
            .metadata
            .finalizers
            .unwrap()
            .contains(&sip::api::FINALIZER.to_string())
    );

    // Exactly the ledger's hosts carry the labels, with their role; addresses were read.
    assert_eq!(status.hosts.len(), 4);
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    for h in hosts.list(&Default::default()).await.unwrap() {
        let name = h.metadata.name.clone().unwrap();
        let labels = h.metadata.labels.clone().unwrap_or_default();
        match status.hosts.iter().find(|r| r.name == name) {
            Some(r) => {
                assert_eq!(r.state, HostState::Labeled);
                assert_eq!(
                    labels.get(LABEL_CLUSTER_NAME).map(String::as_str),
                    Some("sipcluster-system"),
                    "{name}"
                );
                assert_eq!(
                    labels.get(LABEL_CLUSTER_NAMESPACE),
                    Some(&env.namespace),
                    "{name}"
                );
                assert_eq!(
                    labels.get(LABEL_NODE_TYPE).map(String::as_str),
                    Some(r.role.as_str()),
                    "{name}"
                );
                assert!(
                    r.addresses["oam-ipv4"].starts_with("192.168.100."),
                    "{name}: {:?}",
                    r.addresses
                );
                assert!(r.bmc_address.is_some());
            }
            None => assert!(
                !labels.contains_key(LABEL_CLUSTER_NAME),
                "{name} labeled but not in the ledger"
            ),
        }
    }
    let status_json = serde_json::to_string(&status).unwrap();
    assert!(
        !status_json.contains("sample-password"),
        "a BMC password reached the status"
    );

    // kubectl describe tells the story.
    let described = env.kubectl(&["describe", "sip", "sipcluster-system", "-n", &env.namespace]);
    for needle in [
        "Phase:",
        "Ready",
        "History:",
        "HostsChosen",
        "HostsLabeled",
        "Events:",
        "ReconciliationSucceeded",
    ] {
        assert!(
            described.contains(needle),
            "{needle:?} missing from kubectl describe:\n{described}"
        );
    }
    assert!(!described.contains("sample-password"));

    // Deletion: labels removed from exactly the ledger's hosts, then the object goes.
    api.delete("sipcluster-system", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &api,
        "sipcluster-system",
        "the SIPCluster to be gone",
        |c| c.is_none(),
    )
    .await;
    for h in hosts.list(&Default::default()).await.unwrap() {
        let labels = h.metadata.labels.unwrap_or_default();
        for key in [LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, LABEL_NODE_TYPE] {
            assert!(
                !labels.contains_key(key),
                "{key} left on {:?}",
                h.metadata.name
            );
        }
        assert!(
            labels.contains_key("vino.airshipit.org/flavor"),
            "other labels must stay"
        );
    }
    operator.abort();
}

#[tokio::test]
async fn a_cluster_created_again_under_its_name_is_not_held_by_the_old_ones_backoff() {
    let env = test_env("recreated").await;
    load_hosts(&env).await;
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Blocked, retried at 2, 4, 8 s...
    create_unschedulable(&env, &api, "again").await;
    // Three holds in (the next would be 16 s), the user deletes it and applies a fixed one.
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    api.delete("again", &DeleteParams::default()).await.unwrap();
    wait_gone(&api, "again").await;
    let created = std::time::Instant::now();
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "again", no_worker_balancer),
    )
    .await
    .unwrap();
    wait_for(&api, "again", "Ready", |c| phase(c) == Some(Phase::Ready)).await;
    let took = created.elapsed();
    assert!(
        took < std::time::Duration::from_secs(8),
        "the new cluster waited {took:?}: the old one's backoff held it"
    );
    operator.abort();
}

#[tokio::test]
async fn a_cluster_whose_finalizer_is_removed_by_hand_leaves_nothing_in_the_operators_memories() {
    let env = test_env("forgotten").await;
    load_hosts(&env).await;
    let (operator, metrics) = start_metered_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "stays", no_worker_balancer),
    )
    .await
    .unwrap();
    wait_for(&api, "stays", "Ready", |c| phase(c) == Some(Phase::Ready)).await;
    // Held, with a backoff entry.
    create_unschedulable(&env, &api, "forced").await;
    poke(&api, "stays", "1").await;
    memories_until(&metrics, "the held cluster in the backoff", |held| {
        held.get("backoff") == Some(&1)
    })
    .await;
    // Someone removes the finalizer by hand and deletes it: no turn of its own follows.
    let no_finalizer = serde_json::json!({"metadata": {"finalizers": null}});
    api.patch(
        "forced",
        &PatchParams::default(),
        &Patch::Merge(&no_finalizer),
    )
    .await
    .unwrap();
    api.delete("forced", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&api, "forced").await;
    // The next turn of any cluster forgets it everywhere; what stays is the Ready one's.
    poke(&api, "stays", "2").await;
    let held = memories_until(&metrics, "the gone cluster forgotten", |held| {
        held.get("backoff") == Some(&0) && held.values().all(|n| *n <= 1)
    })
    .await;
    assert_eq!(held.len(), 5, "every memory reported: {held:?}");
    operator.abort();
}

/// Creates `name` asking for more control-plane hosts than the pool has, and waits until it
/// says Unschedulable (held, with a backoff entry).
async fn create_unschedulable(env: &TestEnv, api: &Api<SIPCluster>, name: &str) {
    let blocked = sample_cluster(env, name, |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"]["active"] = serde_json::json!(9);
        no_worker_balancer(m);
    });
    api.create(&PostParams::default(), &blocked).await.unwrap();
    wait_for(api, name, "Unschedulable", |c| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|r| r.reason == "Unschedulable")
    })
    .await;
}

/// Waits (30 s at most) until what the operator's memories hold passes `check`; returns it.
async fn memories_until(
    metrics: &sip::metrics::Metrics,
    what: &str,
    check: impl Fn(&std::collections::BTreeMap<String, i64>) -> bool,
) -> std::collections::BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = metrics.memories_held();
        if check(&held) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `name` is gone from the API server (30 s at most).
async fn wait_gone(api: &Api<SIPCluster>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "{name} not gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Without the worker balancer (the shared control plane's static node-port band is small).
fn no_worker_balancer(m: &mut serde_json::Value) {
    m["spec"]["services"]
        .as_object_mut()
        .unwrap()
        .remove("loadBalancerWorker");
}

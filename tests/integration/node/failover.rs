//! The operator's leader goes in the middle of a creation: two SIPClusters contend for one pool,
//! the one that takes it stops in DeployingInfra (the jump host's Secret is missing), and
//! `kubectl delete pod` removes the Lease holder. Once another replica holds the Lease the
//! Secret appears: the new leader finishes from the persisted phase with the same ledger (no
//! second choice of hosts), the other cluster stays Unschedulable with none, and no host is
//! labeled or ledgered for both.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use sip::api::{Phase, SIPCluster};

use super::services::tenant_cluster;
use super::{TENANT_LABEL, cluster, kubectl_ok, node_env};
use crate::common::host_labels;
use crate::tenant::{Tenant, node_keys};

async fn holder(leases: &Api<Lease>) -> String {
    leases
        .get("sip-operator")
        .await
        .ok()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

const DEPLOYING: Phase = Phase::DeployingInfra;

/// The hosts (name and uid) in a cluster's ledger.
fn ledger(c: &SIPCluster) -> BTreeSet<(String, Option<String>)> {
    c.status.as_ref().map_or_else(BTreeSet::new, |s| {
        s.hosts
            .iter()
            .map(|h| (h.name.clone(), h.uid.clone()))
            .collect()
    })
}

/// Waits until one of `first` and `second` is in `phase` and the other Unschedulable; returns
/// (that one, the other).
async fn outcome(api: &Api<SIPCluster>, phase: Phase, what: &str) -> (SIPCluster, SIPCluster) {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let first = api.get("first").await.unwrap();
        let second = api.get("second").await.unwrap();
        let in_phase = |c: &SIPCluster| c.status.as_ref().and_then(|s| s.phase) == Some(phase);
        let unschedulable = |c: &SIPCluster| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "Unschedulable")
            })
        };
        if in_phase(&first) && unschedulable(&second) {
            return (first, second);
        }
        if in_phase(&second) && unschedulable(&first) {
            return (second, first);
        }
        assert!(
            Instant::now() < deadline,
            "{what} and the other Unschedulable within 150 s; seen {:?} and {:?}",
            first.status,
            second.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_standby_finishes_what_a_deleted_leader_pod_began() {
    let Some(env) = node_env("node-failover").await else {
        return;
    };
    let node = cluster().expect("started by node_env");
    let _pods = super::OPERATOR_PODS.write().await;
    // Nothing answers on these bridge addresses: the services' backends never come up, which
    // changes nothing to what the operator does.
    Tenant {
        hosts: [
            (
                "cp-1",
                "control-plane",
                "198.18.0.241",
                "5a1e0000-0000-4000-8000-000000000041",
            ),
            (
                "cp-2",
                "control-plane",
                "198.18.0.242",
                "5a1e0000-0000-4000-8000-000000000042",
            ),
            (
                "wk-1",
                "worker",
                "198.18.0.243",
                "5a1e0000-0000-4000-8000-000000000043",
            ),
            (
                "wk-2",
                "worker",
                "198.18.0.244",
                "5a1e0000-0000-4000-8000-000000000044",
            ),
        ],
        bmc: "198.18.0.245:8000",
        label: Some((TENANT_LABEL, env.namespace.clone())),
    }
    .create_hosts(&env)
    .await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "sip-system");
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in ["first", "second"] {
        let cluster = tenant_cluster(&env, name, |_| {});
        api.create(&PostParams::default(), &cluster).await.unwrap();
    }
    let (stuck, _) = outcome(&api, DEPLOYING, "one cluster stopped in DeployingInfra").await;
    let chosen = ledger(&stuck);
    assert_eq!(
        chosen.len(),
        4,
        "the stopped cluster holds the whole pool: {chosen:?}"
    );
    let leader = holder(&leases).await;
    assert!(!leader.is_empty(), "a replica holds the Lease");
    kubectl_ok(
        node,
        &["delete", "pod", &leader, "-n", "sip-system", "--wait=false"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let successor = loop {
        let now = holder(&leases).await;
        if !now.is_empty() && now != leader {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no other replica took the Lease from {leader} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("the Lease went from {leader} to {successor}");
    node_keys(&env, b"placeholder".to_vec()).await;
    let (ready, other) = outcome(&api, Phase::Ready, "one cluster Ready").await;
    assert_eq!(
        ready.metadata.name, stuck.metadata.name,
        "the cluster that had the pool is the one finished"
    );
    assert_eq!(
        holder(&leases).await,
        successor,
        "the successor finished it"
    );
    let (winner, loser) = (ledger(&ready), ledger(&other));
    assert_eq!(winner, chosen, "the same hosts as before the leader went");
    assert!(loser.is_empty(), "the other holds no host: {loser:?}");
    let labels = host_labels(&Api::namespaced(env.client.clone(), &env.namespace)).await;
    let ready_name = ready.metadata.name.clone().unwrap();
    assert_eq!(labels.len(), 4, "every host labeled: {labels:?}");
    for (host, (cluster, _)) in &labels {
        assert_eq!(
            cluster, &ready_name,
            "{host} is labeled for the Ready cluster only"
        );
        assert!(
            winner.iter().any(|(name, _)| name == host),
            "{host} is in the Ready cluster's ledger"
        );
    }
}

//! The controller's invariants on the real API server: clear answers for bad input and
//! recovery without a restart, replacement of unusable hosts, exclusivity under contention and
//! across namespaces, and no writes once Ready.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{BareMetalHost, Phase, SIPCluster};

use crate::checker::{Checker, serve_in_rounds};
use crate::common::{
    TestEnv, children_of, fifth_rack_host, labeled_hosts, load_hosts, phase, poke_and_wait,
    sample_cluster, start_metered_operator, start_operator, test_env, wait_for,
};

/// The sample SIPCluster named `name` in the test namespace, with its counts changed.
fn cluster(env: &TestEnv, name: &str, cp: (u32, u32), workers: (u32, u32)) -> SIPCluster {
    sample_cluster(env, name, |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": cp.0, "standby": cp.1});
        m["spec"]["nodes"]["Worker"]["count"] = json!({"active": workers.0, "standby": workers.1});
    })
}

fn ready_condition(c: Option<&SIPCluster>) -> Option<(String, String, String)> {
    c?.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn events_for(env: &TestEnv, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_unschedulable_cluster_says_why_and_recovers_when_a_host_appears() {
    let env = test_env("unschedulable").await;
    load_hosts(&env).await;
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Five control-plane hosts, one per rack: the pool has four racks.
    api.create(
        &PostParams::default(),
        &cluster(&env, "big", (3, 2), (1, 0)),
    )
    .await
    .unwrap();
    let seen = wait_for(&api, "big", "Ready=False Unschedulable", |c| {
        ready_condition(c).is_some_and(|(s, r, _)| s == "False" && r == "Unschedulable")
    })
    .await;
    let (_, _, message) = ready_condition(seen.as_ref()).unwrap();
    for needle in [
        "ControlPlane: wanted 5, have 0, can add 4",
        "lower spec.nodes.ControlPlane.count",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    assert!(
        labeled_hosts(&env).await.is_empty(),
        "nothing is claimed when unschedulable"
    );
    assert!(seen.unwrap().status.unwrap().hosts.is_empty());
    let events = events_for(&env, "big").await;
    assert!(
        events
            .iter()
            .any(|(t, r, m)| t == "Warning" && r == "Unschedulable" && m.contains("wanted 5")),
        "{events:?}"
    );

    // A fifth rack appears: the cluster goes Ready without a restart.
    sip_envtest::apply_yaml(
        &env.client,
        &fifth_rack_host(&env.namespace),
        &env.namespace,
    )
    .await
    .unwrap();
    wait_for(&api, "big", "Ready after a host appeared", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    assert_eq!(labeled_hosts(&env).await.len(), 6);
    operator.abort();
}

#[tokio::test]
async fn a_host_with_bad_network_data_is_replaced_and_named() {
    let env = test_env("badsecret").await;
    load_hosts(&env).await;
    // cp-1 would be chosen first; its networkData is garbage.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let garbage = Secret {
        data: Some(
            [(
                "networkData".to_string(),
                ByteString(b"{not: [valid".to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    secrets
        .patch(
            "cp-1-network-data",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": garbage.data})),
        )
        .await
        .unwrap();
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &cluster(&env, "c", (1, 1), (1, 0)))
        .await
        .unwrap();
    let ready = wait_for(&api, "c", "Ready with a replacement", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap();
    let status = ready.status.unwrap();
    let names: Vec<&str> = status.hosts.iter().map(|h| h.name.as_str()).collect();
    assert!(
        !names.contains(&"cp-1"),
        "the bad host must not serve: {names:?}"
    );
    assert!(
        names.contains(&"cp-2") && names.contains(&"cp-3"),
        "{names:?}"
    );
    let labels = labeled_hosts(&env).await;
    assert!(!labels.contains_key("cp-1"));
    let story: Vec<Phase> = status.history.iter().map(|h| h.to).collect();
    assert_eq!(
        story.iter().filter(|p| **p == Phase::Gathering).count(),
        2,
        "{story:?}"
    );
    let events = events_for(&env, "c").await;
    let warning = events
        .iter()
        .find(|(t, r, _)| t == "Warning" && r == "HostUnusable")
        .unwrap_or_else(|| panic!("no HostUnusable warning: {events:?}"));
    for needle in [
        "cp-1",
        "cp-1-network-data",
        "neither JSON nor YAML",
        "fix its syntax",
    ] {
        assert!(
            warning.2.contains(needle),
            "{needle:?} not in {:?}",
            warning.2
        );
    }
    operator.abort();
}

#[tokio::test]
async fn no_host_ever_serves_two_clusters_under_contention() {
    let env = test_env("contention").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Every write the API server accepts is seen here, ledgers, labels and rendered services:
    // no host in two clusters' ledgers or services, no label moved between clusters, at any
    // instant; a failed watch is a violation, and a watch that saw nothing fails the test.
    let pool = (1..=4)
        .map(|i| format!("cp-{i}"))
        .chain((1..=6).map(|i| format!("wk-{i}")))
        .collect();
    let checker = Checker::start(
        &env.client,
        &env.namespace,
        pool,
        std::slice::from_ref(&env.namespace),
    );
    let operator = start_operator(&env);
    // Twenty clusters of 1 control plane + 1 worker at once; the pool has 4 control-plane
    // hosts, so 4 fit. Each round deletes the Ready ones, and 4 of the waiting take their hosts.
    let total = 20;
    for i in 0..total {
        api.create(
            &PostParams::default(),
            &cluster(&env, &format!("c{i}"), (1, 0), (1, 0)),
        )
        .await
        .unwrap();
    }
    // Checked on every observation, not only at the end.
    let no_host_in_two_ledgers = |clusters: &[SIPCluster]| {
        let mut owner: HashMap<String, String> = HashMap::new();
        for c in clusters {
            let name = c.metadata.name.clone().unwrap();
            for r in c
                .status
                .iter()
                .flat_map(|s| s.hosts.iter())
                .filter(|r| r.state.claims())
            {
                if let Some(other) = owner.insert(r.name.clone(), name.clone()) {
                    panic!("{} is in the ledgers of {other} and {name}", r.name);
                }
            }
        }
    };
    let apis = std::slice::from_ref(&api);
    let rounds = serve_in_rounds(
        apis,
        total,
        4,
        Duration::from_secs(180),
        no_host_in_two_ledgers,
    )
    .await;
    assert_eq!(rounds, 4);
    // Settled: every label names the cluster whose ledger holds the host. (Checked only here:
    // hosts and clusters cannot be read in one snapshot while labels are being written.)
    let clusters = api.list(&ListParams::default()).await.unwrap().items;
    let labeled = labeled_hosts(&env).await;
    assert_eq!(labeled.len(), 8);
    for (host, owner) in &labeled {
        let in_ledger = clusters
            .iter()
            .find(|c| c.metadata.name.as_ref() == Some(owner))
            .and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.hosts.iter().any(|r| &r.name == host));
        assert!(
            in_ledger,
            "{host} labeled for {owner} but not in its ledger"
        );
    }
    operator.abort();
    checker.finish();
}

#[tokio::test]
async fn claims_of_clusters_in_other_namespaces_are_respected() {
    let env = test_env("elsewhere").await;
    load_hosts(&env).await;
    // A SIPCluster in another namespace, which this operator does not serve (another instance
    // would), claims every host in its ledger.
    let other_ns = sip_envtest::create_namespace(&env.client, "elsewhere-other")
        .await
        .unwrap();
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let ledger: Vec<serde_json::Value> = hosts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|h| {
            json!({"name": h.metadata.name, "namespace": env.namespace,
                   "role": "Worker", "state": "Extracted"})
        })
        .collect();
    assert!(!ledger.is_empty());
    let mut elsewhere = crate::common::unserved_sample(&env, "elsewhere");
    elsewhere["metadata"]["namespace"] = json!(other_ns);
    let elsewhere: SIPCluster = serde_json::from_value(elsewhere).unwrap();
    let other: Api<SIPCluster> = Api::namespaced(env.client.clone(), &other_ns);
    other
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    let claim = |hosts: &[serde_json::Value]| json!({"status": {"hosts": hosts}});
    other
        .patch_status(
            "elsewhere",
            &PatchParams::default(),
            &Patch::Merge(claim(&ledger)),
        )
        .await
        .unwrap();

    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &cluster(&env, "here", (1, 0), (1, 0)),
    )
    .await
    .unwrap();
    let blocked = wait_for(&api, "here", "Unschedulable", |c| {
        ready_condition(c).is_some_and(|(_, r, _)| r == "Unschedulable")
    })
    .await;
    let (_, _, why) = ready_condition(blocked.as_ref()).unwrap();
    assert!(!why.contains(" 0 claimed by other"), "says why: {why}");
    assert!(
        why.contains("claimed by other SIPClusters"),
        "says why: {why}"
    );
    assert!(labeled_hosts(&env).await.is_empty());

    // Released there, the hosts are taken here without a restart.
    other
        .patch_status(
            "elsewhere",
            &PatchParams::default(),
            &Patch::Merge(claim(&[])),
        )
        .await
        .unwrap();
    wait_for(&api, "here", "Ready", |c| phase(c) == Some(Phase::Ready)).await;
    operator.abort();
}

#[tokio::test]
async fn once_ready_a_forced_reconcile_writes_nothing() {
    let env = test_env("idempotent").await;
    load_hosts(&env).await;
    let (operator, metrics) = start_metered_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &cluster(&env, "c", (1, 1), (1, 1)))
        .await
        .unwrap();
    let ready = wait_for(&api, "c", "Ready", |c| phase(c) == Some(Phase::Ready))
        .await
        .unwrap();
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let versions = |list: Vec<BareMetalHost>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|h| {
                (
                    h.metadata.name.unwrap(),
                    h.metadata.resource_version.unwrap(),
                )
            })
            .collect()
    };
    let before = versions(hosts.list(&ListParams::default()).await.unwrap().items);
    let children = children_of(&env, "c").await;
    assert!(!children.is_empty(), "the sample has services");

    // An annotation change is an event for the cluster without a spec change; the operator
    // reconciles it (counted), and writes nothing.
    poke_and_wait(&api, "c", "1", &metrics).await;
    let after = api.get("c").await.unwrap();
    assert_eq!(
        after.status, ready.status,
        "a Ready cluster's status must not be rewritten"
    );
    assert_eq!(
        versions(hosts.list(&ListParams::default()).await.unwrap().items),
        before,
        "no host may be written"
    );
    assert_eq!(
        children_of(&env, "c").await,
        children,
        "no object of the services may be written"
    );
    operator.abort();
}

//! After Ready, members change: one is paused (metal3's maintenance mark: kept), one errors,
//! one is marked unhealthy, one deleted; then one is annotated for release and the count
//! lowered. Each failed one is released exactly (its labels removed, out of the ledger's
//! members) and replaced from a free domain while the count still wants it, and the cluster is
//! Ready again, as the scheduling unit tests say it decides.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{
    ANNOTATION_RELEASE, BareMetalHost, Phase, SIPCluster,
    baremetalhost::{PAUSED_ANNOTATION, UNHEALTHY_ANNOTATION},
};

use crate::common::{
    TestEnv, labeled_hosts, load_hosts, phase, sample_cluster, start_operator, test_env, wait_for,
};

/// The worker members of `c`: host name -> topology domain.
fn workers(c: &SIPCluster) -> BTreeMap<String, String> {
    c.status
        .iter()
        .flat_map(|s| &s.hosts)
        .filter(|h| h.state.is_member() && h.role == sip::api::NodeRole::Worker)
        .map(|h| {
            (
                h.name.clone(),
                h.topology_domain.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `tenant` is Ready at its generation with `count` workers on distinct domains,
/// none of them `gone`; returns them.
async fn settled(
    api: &Api<SIPCluster>,
    count: usize,
    gone: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let c = wait_for(api, "tenant", "Ready with its workers replaced", |c| {
        c.is_some_and(|c| {
            let w = workers(c);
            let domains: BTreeSet<&String> = w.values().collect();
            phase(Some(c)) == Some(Phase::Ready)
                && c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
                && w.len() == count
                && domains.len() == count
                && w.keys().all(|h| !gone.contains(h))
        })
    })
    .await
    .unwrap();
    workers(&c)
}

async fn annotate(hosts: &Api<BareMetalHost>, host: &str, key: &str) {
    let patch = json!({"metadata": {"annotations": {key: "true"}}});
    hosts
        .patch(host, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

/// Every labeled host is a member of the tenant and every member is labeled.
async fn labels_match(env: &TestEnv, api: &Api<SIPCluster>) {
    let c = api.get("tenant").await.unwrap();
    let members: BTreeSet<String> = c
        .status
        .iter()
        .flat_map(|s| &s.hosts)
        .filter(|h| h.state.is_member())
        .map(|h| h.name.clone())
        .collect();
    let labeled: BTreeSet<String> = labeled_hosts(env).await.into_keys().collect();
    assert_eq!(labeled, members, "labels and ledger disagree");
}

#[tokio::test]
async fn members_that_fail_after_ready_are_replaced_and_a_released_one_leaves() {
    let env = test_env("members").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    let tenant = sample_cluster(&env, "tenant", |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 1, "standby": 0});
        m["spec"]["nodes"]["Worker"]["count"] = json!({"active": 2, "standby": 0});
        let services = m["spec"]["services"].as_object_mut().unwrap();
        for service in ["auth", "jumpHost", "loadBalancerWorker"] {
            services.remove(service);
        }
    });
    let operator = start_operator(&env);
    api.create(&PostParams::default(), &tenant).await.unwrap();
    let mut gone = BTreeSet::new();
    let mut members = settled(&api, 2, &gone).await;
    labels_match(&env, &api).await;

    // Paused by metal3 (an inspection, a move): kept, nothing rewritten.
    let paused = members.keys().next().unwrap().clone();
    let before = api.get("tenant").await.unwrap().metadata.resource_version;
    annotate(&hosts, &paused, PAUSED_ANNOTATION).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let now = api.get("tenant").await.unwrap();
    assert_eq!(workers(&now), members, "a paused member is kept");
    assert_eq!(
        now.metadata.resource_version, before,
        "nothing written for a pause"
    );
    labels_match(&env, &api).await;

    // In error, then marked unhealthy, then deleted: each a member, each replaced.
    for how in ["errored", "unhealthy", "deleted"] {
        let host = members.keys().find(|h| **h != paused).unwrap().clone();
        match how {
            "errored" => {
                let status = json!({"status": {"errorMessage": "BMC unreachable", "operationalStatus": "error"}});
                hosts
                    .patch_status(&host, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .unwrap();
            }
            "unhealthy" => annotate(&hosts, &host, UNHEALTHY_ANNOTATION).await,
            _ => {
                hosts.delete(&host, &DeleteParams::default()).await.unwrap();
            }
        }
        gone.insert(host.clone());
        let after = settled(&api, 2, &gone).await;
        let kept: Vec<&String> = after.keys().filter(|h| members.contains_key(*h)).collect();
        assert_eq!(
            kept.len(),
            1,
            "{how} {host}: the other member is kept: {after:?}"
        );
        labels_match(&env, &api).await;
        members = after;
    }

    // A member annotated for release, and the count lowered: that one leaves, the other stays.
    let kept = paused;
    let released = members.keys().find(|h| **h != kept).unwrap().clone();
    annotate(&hosts, &released, ANNOTATION_RELEASE).await;
    let fewer = json!({"spec": {"nodes": {"Worker": {"count": {"active": 1, "standby": 0}}}}});
    api.patch("tenant", &PatchParams::default(), &Patch::Merge(fewer))
        .await
        .unwrap();
    let after = settled(&api, 1, &BTreeSet::from([released.clone()])).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        [&kept],
        "{released} was to leave"
    );
    labels_match(&env, &api).await;
    operator.abort();
}

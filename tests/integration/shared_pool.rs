//! Two operators, each serving its own namespace's SIPClusters, choosing from one pool of
//! hosts (per-namespace operators): they decide at the same moment on the same view, so both
//! choose the same hosts. The claim confirmation (`ledgers.rs`, "Confirming a claim") lets
//! only the earlier claim through to the services; the live checker asserts at every event
//! that no host is in two ledgers, two clusters' rendered services or moved between labels.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use sip::failpoint::{Pause, Site};

use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};

use crate::checker::{Checker, serve_in_rounds};
use crate::common::{
    SAMPLE_SIPCLUSTER, TestEnv, document_of_kind, load_hosts, phase, sample_cluster,
    start_operator_on_with, test_env, wait_for,
};

/// A 1 + 1 cluster named `name` in `namespace`, with the control-plane balancer and the jump
/// host (both render the hosts), and no worker balancer (its node ports are a scarce band).
fn cluster(env: &TestEnv, namespace: &str, name: &str) -> SIPCluster {
    sample_cluster(env, name, |m| {
        m["metadata"]["namespace"] = json!(namespace);
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 1, "standby": 0});
        m["spec"]["nodes"]["Worker"]["count"] = json!({"active": 1, "standby": 0});
        m["spec"]["services"]
            .as_object_mut()
            .unwrap()
            .remove("loadBalancerWorker");
    })
}

#[tokio::test]
async fn two_operators_sharing_one_pool_never_give_a_host_to_two_clusters() {
    let env = test_env("sharedpool").await;
    load_hosts(&env).await;
    let mut namespaces = Vec::new();
    for side in ["a", "b"] {
        let ns = sip_envtest::create_namespace(&env.client, &format!("sharedpool-{side}"))
            .await
            .unwrap();
        // The jump host's node keys, in each cluster's namespace.
        let mut keys = document_of_kind(SAMPLE_SIPCLUSTER, "Secret");
        keys["metadata"]["namespace"] = json!(ns);
        sip_envtest::apply_yaml(&env.client, &serde_json::to_string(&keys).unwrap(), &ns)
            .await
            .unwrap();
        namespaces.push(ns);
    }
    let pool = (1..=4)
        .map(|i| format!("cp-{i}"))
        .chain((1..=6).map(|i| format!("wk-{i}")))
        .collect();
    let checker = Checker::shared(&env.client, &env.namespace, pool, &namespaces);
    // Four clusters on each side; the pool has four control-plane hosts, so four fit. Each
    // round deletes the Ready ones, and the waiting take their hosts.
    let apis: Vec<Api<SIPCluster>> = namespaces
        .iter()
        .map(|ns| Api::namespaced(env.client.clone(), ns))
        .collect();
    let per_side = 4;
    for i in 0..per_side {
        for (api, ns) in apis.iter().zip(&namespaces) {
            let c = cluster(&env, ns, &format!("c{i}"));
            api.create(&PostParams::default(), &c).await.unwrap();
        }
    }
    // The race, made certain: `a` decides and holds its claim write; `b` decides on the same
    // view (no claims), claims the same hosts, confirms and serves; then `a`'s claim lands,
    // second. Afterwards both run freely, deciding at the same moments as they please.
    let pause = Arc::new(Pause::new(Site::Status));
    let (a, _) = start_operator_on_with(env.cp, &env.namespace, "a", |s| {
        s.cluster_namespace = Some(namespaces[0].clone());
        s.pause = Some(pause.clone());
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), pause.reached())
        .await
        .expect("operator a never wrote a claim");
    let (b, _) = start_operator_on_with(env.cp, &env.namespace, "b", |s| {
        s.cluster_namespace = Some(namespaces[1].clone());
    })
    .await;
    wait_for(&apis[1], "c0", "b's first cluster Ready", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    pause.release();
    let rounds = serve_in_rounds(&apis, 2 * per_side, 4, Duration::from_secs(240), |_| {}).await;
    assert_eq!(rounds, 1, "eight clusters, four fit at a time");
    a.abort();
    b.abort();
    checker.finish();
    // The held claim came second, and said so.
    let events: Api<Event> = Api::namespaced(env.client.clone(), &namespaces[0]);
    let contested = events
        .list(&ListParams::default().fields("reason=HostsContested"))
        .await
        .unwrap()
        .items;
    let said = contested
        .iter()
        .filter_map(|e| e.message.as_deref())
        .any(|m| {
            m.contains(&format!("held by {}/", namespaces[1])) && m.contains("choosing again")
        });
    assert!(said, "no HostsContested Event in a: {contested:?}");
}

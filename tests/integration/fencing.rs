//! Fencing with a turn in flight: the leader is in the middle of Labeling, its label patch held
//! by a failpoint, when another replica takes its Lease. It stops within a fraction of the
//! Lease (dropping the turn), the held write never reaches the API server, and from then on it
//! writes nothing at all: its write count stays frozen while the cluster's status and the
//! hosts' labels stay as the loss left them.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use sip::api::{Phase, SIPCluster};
use sip::failpoint::{Pause, Site};

use crate::common::{
    labeled_hosts, load_hosts, metered_config, metric_sum, operator_settings, phase,
    sample_cluster, take_lease, test_env,
};

const LEASE_SECONDS: u64 = 10;

/// Every write the replica's client sent (the API request metrics count each request).
fn writes(metrics: &sip::metrics::Metrics) -> f64 {
    ["create", "patch", "update", "delete"]
        .iter()
        .map(|verb| {
            metric_sum(
                metrics,
                "sip_api_requests_total",
                &[&format!(r#"verb="{verb}""#)],
            )
        })
        .sum()
}

#[tokio::test]
async fn a_leader_losing_its_lease_mid_turn_sends_the_held_write_never_and_then_nothing() {
    let env = test_env("fence-in-flight").await;
    load_hosts(&env).await;
    // The replica as `sip run` builds it: a fenced, metered client, the Lease held around the
    // controller, a label patch held when Labeling reaches it.
    let (config, requests, layer) = metered_config(env.cp).await;
    let fence = sip::leader::Fence::shut();
    let client = sip::client::build_fenced(config, layer, fence.clone()).unwrap();
    let pause = Arc::new(Pause::new(Site::Labels));
    let metrics = Arc::new(sip::metrics::Metrics::new());
    let mut settings = operator_settings(&env.namespace, "old", &metrics);
    settings.pause = Some(pause.clone());
    let lease = sip::leader::LeaseSettings {
        name: "sip-operator".into(),
        namespace: env.namespace.clone(),
        identity: "old".into(),
        duration_seconds: LEASE_SECONDS,
        fence,
    };
    // The Lease on a client of its own, as `sip run` keeps it: the fence guards the
    // controller's writes, not the renewals.
    let leader = tokio::spawn({
        let (lease_client, metrics) = (env.client.clone(), metrics.clone());
        async move {
            sip::leader::run_as_leader(
                lease_client,
                lease,
                metrics,
                std::future::pending(),
                |stop| sip::controller::run(client, settings, stop),
            )
            .await
        }
    });

    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let tenant = sample_cluster(&env, "tenant", |m| {
        let services = m["spec"]["services"].as_object_mut().unwrap();
        for service in ["auth", "jumpHost", "loadBalancerWorker"] {
            services.remove(service);
        }
    });
    api.create(&PostParams::default(), &tenant).await.unwrap();
    if tokio::time::timeout(Duration::from_secs(60), pause.reached())
        .await
        .is_err()
    {
        let seen = api.get_opt("tenant").await.unwrap().and_then(|c| c.status);
        if leader.is_finished() {
            panic!("the leader ended: {:?}", leader.await);
        }
        panic!(
            "Labeling's first patch was never reached (leader {}, working {}): {seen:#?}",
            metrics.is_leader(),
            metrics.is_working()
        );
    }
    // In flight: the services applied, the other members' patches (they overlap) through,
    // the held one not.
    let at = phase(api.get_opt("tenant").await.unwrap().as_ref());
    assert!(
        matches!(at, Some(Phase::DeployingInfra | Phase::Labeling)),
        "{at:?}"
    );
    let labeled = labeled_hosts(&env).await;
    assert!(labeled.len() < 4, "the held patch went: {labeled:?}");

    take_lease(&env, "intruder").await;
    let ended = tokio::time::timeout(Duration::from_secs(LEASE_SECONDS), leader)
        .await
        .expect("the old leader kept its turn on a Lease someone else holds")
        .unwrap();
    assert!(ended.is_err(), "losing the Lease is an error: {ended:?}");
    // The held patch let go now: its turn is gone, and the fence is shut behind it.
    pause.release();

    let frozen = writes(&requests);
    let labeled = labeled_hosts(&env).await;
    assert!(labeled.len() < 4, "the held patch went: {labeled:?}");
    let status = api.get("tenant").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes(&requests),
        frozen,
        "the fenced leader wrote after it stopped"
    );
    assert_eq!(
        api.get("tenant").await.unwrap().metadata.resource_version,
        status,
        "the status changed after the leader stopped"
    );
    assert_eq!(
        labeled_hosts(&env).await,
        labeled,
        "the held label patch reached its host"
    );
    assert!(
        frozen > 0.0,
        "the leader had written before: the count is its own"
    );
}

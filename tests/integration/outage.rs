//! The API server, or etcd behind it, goes away while a cluster is being created and comes
//! back (a control-plane upgrade, a crash): the operator rides it out without a restart, its
//! watches see what changed since, and it takes the cluster to Ready, the story intact: idle in
//! Gathering, and with a write of DeployingInfra in flight.

use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};
use sip_envtest::{ControlPlane, create_namespace};

use crate::common::{
    SAMPLE_SIPCLUSTER, assert_uninterrupted_story, document_of_kind, fifth_rack_host,
    load_hosts_into, metric_sum, start_operator_on, start_operator_on_with,
};

async fn phase_of(api: &Api<SIPCluster>) -> Option<Phase> {
    api.get_opt("tenant")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.status?.phase)
}

/// The sample as written (a control plane of the test's own has no other Services), named
/// `tenant` in `namespace`, with `edit` applied, created.
async fn create_tenant(
    admin: &kube::Client,
    namespace: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let mut cluster = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    cluster["metadata"]["namespace"] = json!(namespace);
    cluster["metadata"]["name"] = json!("tenant");
    edit(&mut cluster);
    let cluster: SIPCluster = serde_json::from_value(cluster).unwrap();
    Api::<SIPCluster>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
}

/// Waits up to 90 s for `tenant` to be Ready; `after` says after what, for the failure.
async fn ready_within_90_s(api: &Api<SIPCluster>, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while phase_of(api).await != Some(Phase::Ready) {
        assert!(Instant::now() < deadline, "not Ready 90 s after {after}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What goes away and comes back.
#[derive(Clone, Copy, Debug)]
enum Outage {
    ApiServer,
    Etcd,
}

#[tokio::test]
async fn the_operator_rides_out_an_api_server_restart_mid_creation() {
    ride_out(Outage::ApiServer).await;
}

#[tokio::test]
async fn the_operator_rides_out_an_etcd_restart_mid_creation() {
    ride_out(Outage::Etcd).await;
}

async fn ride_out(outage: Outage) {
    // A control plane of its own: the shared one serves the other tests.
    let mut cp = ControlPlane::start().await.expect("a control plane");
    let admin = cp.client().await.unwrap();
    let namespace = create_namespace(&admin, "outage").await.unwrap();
    load_hosts_into(&admin, &namespace).await;

    // The operator as `sip run` builds it: the HTTP/2 client, one connection.
    let (operator, metrics) = start_operator_on(&cp, &namespace, "outage").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics.is_working() {
        assert!(Instant::now() < deadline, "the operator never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The sample, as written (this control plane has no other Services), with
    // five control-plane hosts wanted: the pool has four racks, so it waits in Gathering.
    create_tenant(&admin, &namespace, |c| {
        c["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 3, "standby": 2});
    })
    .await;
    let api: Api<SIPCluster> = Api::namespaced(admin.clone(), &namespace);
    let deadline = Instant::now() + Duration::from_secs(20);
    while phase_of(&api).await != Some(Phase::Gathering) {
        assert!(
            Instant::now() < deadline,
            "the operator never started the cluster"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = Phase::Gathering;
    match outage {
        Outage::ApiServer => cp.restart_api_server(Duration::from_secs(3)).await.unwrap(),
        Outage::Etcd => cp.restart_etcd(Duration::from_secs(3)).await.unwrap(),
    }

    // Back, a fifth rack appears: only a watch that came back sees it.
    let admin = cp.client().await.unwrap();
    sip_envtest::apply_yaml(&admin, &fifth_rack_host(&namespace), &namespace)
        .await
        .unwrap();
    let restarted = Instant::now();
    let admin = cp.client().await.unwrap();
    let api: Api<SIPCluster> = Api::namespaced(admin, &namespace);
    ready_within_90_s(
        &api,
        &format!("{outage:?} came back (it went away in {at:?})"),
    )
    .await;
    eprintln!(
        "figure: Ready {:.1?} after {outage:?} came back and a host appeared (it went away in {at:?})",
        restarted.elapsed()
    );
    let status = api.get("tenant").await.unwrap().status.unwrap();
    assert_uninterrupted_story(&status, &format!("through a restart of {outage:?}"));
    assert!(!operator.is_finished(), "the operator was not restarted");
    operator.abort();
}

/// The API server goes away while a turn is in the middle of DeployingInfra: its first service
/// object's apply is held until the server is down, then sent into the outage. The turn fails
/// with nothing of the step written, backs off, and once the server is back the cluster goes on
/// from its persisted phase to Ready, without a restart and with its story intact.
#[tokio::test]
async fn the_operator_rides_out_an_api_server_restart_mid_deploying_infra() {
    use sip::failpoint::{Pause, Site};
    let mut cp = ControlPlane::start().await.expect("a control plane");
    let admin = cp.client().await.unwrap();
    let namespace = create_namespace(&admin, "outage-deploy").await.unwrap();
    load_hosts_into(&admin, &namespace).await;
    let pause = std::sync::Arc::new(Pause::new(Site::Apply));
    let (operator, metrics) = start_operator_on_with(&cp, &namespace, "outage", |s| {
        s.pause = Some(pause.clone());
    })
    .await;

    create_tenant(&admin, &namespace, |_| {}).await;
    let api: Api<SIPCluster> = Api::namespaced(admin.clone(), &namespace);
    tokio::time::timeout(Duration::from_secs(60), pause.reached())
        .await
        .expect("the first service apply was never reached");
    assert_eq!(phase_of(&api).await, Some(Phase::DeployingInfra));
    let errors = || metric_sum(&metrics, "controller_runtime_reconcile_errors_total", &[]);
    let before = errors();

    // Down for four seconds; the held apply is let go one second in.
    let (restarted, ()) = tokio::join!(cp.restart_api_server(Duration::from_secs(4)), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pause.release();
    });
    restarted.unwrap();
    let admin = cp.client().await.unwrap();
    let api: Api<SIPCluster> = Api::namespaced(admin, &namespace);
    ready_within_90_s(&api, "the API server came back mid-DeployingInfra").await;
    assert!(
        errors() > before,
        "the turn in DeployingInfra did not fail: the outage missed it"
    );
    let status = api.get("tenant").await.unwrap().status.unwrap();
    assert_uninterrupted_story(&status, "through an API server restart mid-DeployingInfra");
    assert!(
        status.services.iter().all(|s| s.ready),
        "{:?}",
        status.services
    );
    assert!(!operator.is_finished(), "the operator was not restarted");
    operator.abort();
}

//! High availability with two real `sip run` processes sharing one Lease: only the holder
//! works; when it dies mid-way the standby takes the Lease once it expires and continues from
//! the persisted phase.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use sip::api::{Phase, SIPCluster};

use crate::common::{assert_uninterrupted_story, load_hosts, phase, test_env, wait_for};
use crate::resume::{Operator, resumable};

const LEASE_SECONDS: u64 = 3;

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt("sip-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// The replicas that reported Events about `name`.
pub async fn reporters(env: &crate::common::TestEnv, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// [`reporters`] once they are `expected`, or as they are after 10 s: an Event travels after
/// the status write it tells of, so a replica's Events may trail the phase a test has seen.
pub async fn reporters_by_now(
    env: &crate::common::TestEnv,
    name: &str,
    expected: &[&str],
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = reporters(env, name).await;
        if found == expected || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_the_lease_holder_works_and_a_standby_takes_over_from_the_persisted_phase() {
    let env = test_env("leader").await;
    load_hosts(&env).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let duration = LEASE_SECONDS.to_string();
    let replica = |name: &str, failpoint: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sip"));
        if let Some(point) = failpoint {
            command.env("SIP_FAILPOINT", point);
        }
        Operator::spawn(&env, command, name, &["--lease-duration", &duration])
    };

    // Replica a leads (and will crash right after persisting DeployingInfra); b stands by.
    let a = replica("replica-a", Some("after:DeployingInfra"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while holder(&leases).await.as_deref() != Some("replica-a") {
        assert!(Instant::now() < deadline, "replica-a never took the Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = replica("replica-b", None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-a"),
        "one holder"
    );

    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &resumable(&env, "tenant"))
        .await
        .unwrap();
    a.crashed("after:DeployingInfra").await;
    let crashed_at = Instant::now();
    assert_eq!(
        phase(api.get_opt("tenant").await.unwrap().as_ref()),
        Some(Phase::DeployingInfra)
    );
    assert_eq!(
        reporters(&env, "tenant").await,
        ["replica-a"],
        "only the holder worked"
    );

    // b takes over once the dead holder's Lease expires, and finishes the job from there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while holder(&leases).await.as_deref() != Some("replica-b") {
        assert!(Instant::now() < deadline, "replica-b never took the Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = crashed_at.elapsed();
    // Expiry plus the standby's renewal period, with a second of slack for this machine.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS * 2 + 1),
        "takeover took {takeover:?} with a {LEASE_SECONDS}s lease"
    );
    let ready = wait_for(&api, "tenant", "Ready under the new leader", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap();
    assert_uninterrupted_story(&ready.status.unwrap(), "after the takeover");
    let both = ["replica-a", "replica-b"];
    assert_eq!(reporters_by_now(&env, "tenant", &both).await, both);
    eprintln!("takeover after {takeover:?}");
    b.kill();
}

#[tokio::test]
async fn a_replica_past_its_renew_deadline_sends_no_write() {
    let env = test_env("fence").await;
    let (config, metrics, layer) = crate::common::metered_config(env.cp).await;
    // Shut, as a replica's fence is before it holds the Lease and after its deadline.
    let fence = sip::leader::Fence::shut();
    let client = sip::client::build_fenced(config, layer, fence).unwrap();
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, &env.namespace);
    let refused = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "written"}}))
            .unwrap(),
        )
        .await
        .expect_err("a write past the deadline is refused");
    assert!(refused.to_string().contains("renew deadline"), "{refused}");
    // Reads still pass, and the write never reached the API server.
    assert!(maps.get_opt("written").await.unwrap().is_none());
    let sent = |verb: &str| {
        crate::common::metric_sum(
            &metrics,
            "sip_api_requests_total",
            &[&format!(r#"verb="{verb}""#), r#"resource="configmaps""#],
        )
    };
    assert_eq!(sent("get"), 1.0, "the read was sent and counted");
    assert_eq!(sent("create"), 0.0, "the write was not sent");
}

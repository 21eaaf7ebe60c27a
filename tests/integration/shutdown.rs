//! SIGTERM, as the kubelet sends it to a pod being stopped, while `sip run` works: it exits 0
//! and releases its Lease, what it persisted replays whole, and a successor takes over at once
//! instead of waiting for the Lease to expire and finishes every cluster. (That the step in
//! hand is finished rather than dropped is the code's word, `main.rs`; this test cannot tell
//! the two apart, since every step's status write is whole either way.)

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use sip::api::{Phase, SIPCluster};

use crate::common::{TestEnv, labeled_hosts, load_hosts, phase, test_env, wait_for};
use crate::resume::{Operator, resumable};

/// Long enough that a successor which had to wait for it could not pass the test.
const LEASE_SECONDS: &str = "30";

async fn holder(env: &TestEnv) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
        .get_opt("sip-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

fn operator(env: &TestEnv, instance: &str) -> Operator {
    let command = Command::new(env!("CARGO_BIN_EXE_sip"));
    Operator::spawn(env, command, instance, &["--lease-duration", LEASE_SECONDS])
}

#[tokio::test]
async fn sigterm_mid_work_exits_0_releases_the_lease_and_a_successor_takes_over_at_once() {
    let env = test_env("sigterm").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let names = ["one", "two"];
    for name in names {
        let mut c = resumable(&env, name);
        for set in c.spec.nodes.values_mut() {
            set.count = Some(sip::api::NodeCount {
                active: 1,
                standby: 0,
            });
        }
        api.create(&PostParams::default(), &c).await.unwrap();
    }

    let first = operator(&env, "first");
    // Stopped while it works: a cluster has begun, and not both are Ready yet.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clusters = api.list(&Default::default()).await.unwrap().items;
        let phases: Vec<Option<Phase>> = clusters.iter().map(|c| phase(Some(c))).collect();
        if phases.iter().any(Option::is_some) {
            assert!(
                !phases.iter().all(|p| *p == Some(Phase::Ready)),
                "both clusters were Ready before the signal could be sent: {phases:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the first operator never began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder(&env).await.as_deref(), Some("first"));
    let signalled = Instant::now();
    let status = first.terminate();
    assert!(status.success(), "SIGTERM: exit {status}, not 0");
    let stopped_in = signalled.elapsed();
    assert!(
        stopped_in < Duration::from_secs(10),
        "took {stopped_in:?} to stop after SIGTERM"
    );
    // Released, not left to expire.
    assert_ne!(
        holder(&env).await.as_deref(),
        Some("first"),
        "the Lease was not released"
    );

    // What the first left is whole: each history replays to its phase.
    for c in api.list(&Default::default()).await.unwrap().items {
        if let Some(status) = &c.status {
            let replayed = sip::controller::history::replay(status).unwrap();
            assert_eq!(
                replayed, status.phase,
                "{:?} after SIGTERM",
                c.metadata.name
            );
        }
    }

    let started = Instant::now();
    let _second = operator(&env, "second");
    while holder(&env).await.as_deref() != Some("second") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the successor waited for the Lease to expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in names {
        wait_for(&api, name, "Ready under the successor", |c| {
            phase(c) == Some(Phase::Ready)
        })
        .await;
    }
    let labeled = labeled_hosts(&env).await;
    assert_eq!(labeled.len(), 4, "{labeled:?}");
    for name in names {
        assert_eq!(
            labeled.values().filter(|c| *c == name).count(),
            2,
            "{labeled:?}"
        );
    }
}

//! Resume: the operator process is SIGKILLed at arbitrary instants and restarted; the phase
//! and ledger in the status are its only memory, and the outcome must equal an uninterrupted
//! run: the same hosts, no second choice, labels on exactly the ledger's hosts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams};
use sip::api::{Phase, SIPCluster};

use crate::common::{
    TestEnv, assert_uninterrupted_story, labeled_hosts, load_hosts, phase, sample_cluster,
    test_env, wait_for,
};

/// The real `sip run` binary, scoped to the test's namespace; SIGKILLed on drop.
struct Operator(Child);

impl Operator {
    fn start(env: &TestEnv) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_sip"))
            .args(["run", "--kubeconfig"])
            .arg(&env.cp.kubeconfig)
            .args([
                "--host-namespace",
                &env.namespace,
                "--cluster-namespace",
                &env.namespace,
            ])
            .args(["--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sip run");
        Operator(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill(); // SIGKILL: no chance to finish anything
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deterministic pseudo-random delays, so a failure names a reproducible instant.
fn delays(seed: u64, n: usize, max_ms: u64) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % max_ms
        })
        .collect()
}

/// The ledger as (name, role), and the hosts labeled for `name`.
async fn outcome(
    env: &TestEnv,
    api: &Api<SIPCluster>,
    name: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let c = api.get(name).await.unwrap();
    let mut ledger: Vec<(String, String)> = c
        .status
        .unwrap()
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.role.to_string()))
        .collect();
    ledger.sort();
    let labeled: Vec<String> = labeled_hosts(env)
        .await
        .into_iter()
        .filter(|(_, owner)| owner == name)
        .map(|(host, _)| host)
        .collect();
    (ledger, labeled)
}

#[tokio::test]
async fn killing_the_operator_at_any_instant_changes_nothing_in_the_outcome() {
    let env = test_env("resume").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);

    // The reference: an uninterrupted run.
    let operator = Operator::start(&env);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "reference", |_| {}),
    )
    .await
    .unwrap();
    wait_for(&api, "reference", "reference Ready", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    let reference = outcome(&env, &api, "reference").await;
    api.delete("reference", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "reference", "reference deleted", |c| c.is_none()).await;
    operator.kill();

    // Then 20 runs, each killed at a different instant (from before the first status write
    // to after Ready) and restarted.
    for (i, delay) in delays(0x5eed, 20, 500).into_iter().enumerate() {
        let name = format!("run-{i}");
        let what = format!("{name} (killed after {delay} ms)");
        let operator = Operator::start(&env);
        api.create(&PostParams::default(), &sample_cluster(&env, &name, |_| {}))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        operator.kill();
        let phase_at_kill = phase(api.get_opt(&name).await.unwrap().as_ref());
        eprintln!("{what}: killed in {phase_at_kill:?}");

        let operator = Operator::start(&env);
        let ready = wait_for(&api, &name, &format!("{what} Ready after restart"), |c| {
            phase(c) == Some(Phase::Ready)
        })
        .await
        .unwrap();
        let status = ready.status.unwrap();
        assert_uninterrupted_story(&status, &format!("{what}: killed in {phase_at_kill:?}"));
        assert_eq!(
            outcome(&env, &api, &name).await,
            reference,
            "{what}: same hosts, same labels"
        );

        api.delete(&name, &DeleteParams::default()).await.unwrap();
        wait_for(&api, &name, &format!("{what} deleted"), |c| c.is_none()).await;
        assert!(
            labeled_hosts(&env).await.is_empty(),
            "{what}: labels left after deletion"
        );
        operator.kill();
    }
}

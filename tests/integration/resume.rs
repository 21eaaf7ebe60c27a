//! Resume: the operator process is SIGKILLed at arbitrary instants and restarted; the phase
//! and ledger in the status are its only memory, and the outcome must equal an uninterrupted
//! run: the same hosts, no second choice, labels on exactly the ledger's hosts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};

use crate::common::{
    TestEnv, assert_uninterrupted_story, children_of, labeled_hosts, load_hosts, phase,
    sample_cluster, test_env, told, wait_for,
};

/// The real `sip run` binary, scoped to the test's namespace; SIGKILLed on drop.
pub struct Operator(Child);

impl Operator {
    pub fn start(env: &TestEnv) -> Self {
        Operator::with_failpoint(env, None)
    }

    /// `sip run`, aborting at `failpoint` (see `src/failpoint.rs`) when set.
    pub fn with_failpoint(env: &TestEnv, failpoint: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sip"));
        if let Some(point) = failpoint {
            command.env("SIP_FAILPOINT", point);
        }
        // One identity for every restart: the new process is the same replica, so it takes the
        // Lease its killed predecessor still holds at once.
        Operator::spawn(env, command, "sip-test", &[])
    }

    /// `sip run` scoped to the test's namespace (its Lease too) as replica `instance`, with
    /// `extra` arguments.
    pub fn spawn(env: &TestEnv, mut command: Command, instance: &str, extra: &[&str]) -> Self {
        let child = command
            .args(["run", "--kubeconfig"])
            .arg(&env.cp.kubeconfig)
            .args([
                "--host-namespace",
                &env.namespace,
                "--cluster-namespace",
                &env.namespace,
            ])
            .args(["--log", "warn", "--metrics-address", "127.0.0.1:0"])
            .args(["--lease-namespace", &env.namespace, "--instance", instance])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sip run");
        Operator(child)
    }

    /// Waits for the process to abort at its failpoint.
    pub async fn crashed(mut self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(6),
                    "{what}: expected an abort, got {status}"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the failpoint was never hit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, as the kubelet sends it, then waits for the process to exit: its status.
    /// An operator that already exited was not signalled: that fails the test.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("the operator had exited ({status}) before it was to be stopped");
        }
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).expect("a live pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        self.0.wait().expect("wait for the operator")
    }

    /// SIGKILL: no chance to finish anything. An operator that already exited was not
    /// killed, and its test would prove nothing: that fails the test.
    pub fn kill(mut self) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("the operator had exited ({status}) before it was to be killed");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sample with its services, but no fixed node ports. kube-apiserver can leak a node port
/// allocation when a client dies in the middle of creating a NodePort Service; its repair loop
/// frees it only after three 3-minute rounds, so the restarted operator would wait that long
/// for a fixed port. Ports the API server picks do not collide with a leaked one.
pub fn resumable(env: &TestEnv, name: &str) -> SIPCluster {
    sample_cluster(env, name, |m| {
        let services = m["spec"]["services"].as_object_mut().unwrap();
        services.remove("loadBalancerWorker");
        for service in ["loadBalancerControlPlane", "jumpHost"] {
            services[service][0]
                .as_object_mut()
                .unwrap()
                .remove("nodePort");
        }
    })
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

/// The ledger as (name, role), the hosts labeled for `name`, and its service objects (kind and
/// name without the cluster's name), each exactly once.
pub async fn outcome(
    env: &TestEnv,
    api: &Api<SIPCluster>,
    name: &str,
) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
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
    let children: Vec<String> = children_of(env, name)
        .await
        .into_keys()
        .map(|k| k.replacen(name, "<cluster>", 1))
        .collect();
    (ledger, labeled, children)
}

/// The outcome of an uninterrupted run, which every interrupted one must equal.
async fn reference_outcome(env: &TestEnv, api: &Api<SIPCluster>) -> Outcome {
    let operator = Operator::start(env);
    api.create(&PostParams::default(), &resumable(env, "reference"))
        .await
        .unwrap();
    wait_for(api, "reference", "reference Ready", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    let reference = outcome(env, api, "reference").await;
    assert_eq!(
        reference.2.len(),
        8,
        "the reference has its services: {:?}",
        reference.2
    );
    api.delete("reference", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(api, "reference", "reference deleted", |c| c.is_none()).await;
    operator.kill();
    reference
}

/// When a run's operator is killed: a delay after the cluster's creation, or as soon as the
/// persisted phase is the one given (read every 5 ms).
#[derive(Clone, Copy, Debug)]
enum Kill {
    After(u64),
    At(Option<Phase>),
}

/// The outcome of an uninterrupted run's hosts, labels and services.
type Outcome = (Vec<(String, String)>, Vec<String>, Vec<String>);

/// One run: the cluster created, the operator killed `when`, then restarted; the outcome must
/// be the reference's, and deletion must leave no label. Returns the phase persisted at the
/// kill.
async fn killed_run(
    env: &TestEnv,
    api: &Api<SIPCluster>,
    (name, when): (&str, Kill),
    reference: &Outcome,
) -> Option<Phase> {
    let what = format!("{name} (killed {when:?})");
    let operator = Operator::start(env);
    api.create(&PostParams::default(), &resumable(env, name))
        .await
        .unwrap();
    match when {
        Kill::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Kill::At(None) => {}
        Kill::At(target) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while phase(api.get_opt(name).await.unwrap().as_ref()) != target {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: never reached"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    operator.kill();
    let phase_at_kill = phase(api.get_opt(name).await.unwrap().as_ref());
    eprintln!("{what}: killed in {phase_at_kill:?}");

    let operator = Operator::start(env);
    let ready = wait_for(api, name, &format!("{what} Ready after restart"), |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap();
    let status = ready.status.unwrap();
    assert_uninterrupted_story(&status, &format!("{what}: killed in {phase_at_kill:?}"));
    assert_eq!(
        &outcome(env, api, name).await,
        reference,
        "{what}: same hosts, same labels, the same service objects"
    );
    api.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(api, name, &format!("{what} deleted"), |c| c.is_none()).await;
    assert!(
        labeled_hosts(env).await.is_empty(),
        "{what}: labels left after deletion"
    );
    operator.kill();
    phase_at_kill
}

#[tokio::test]
async fn killing_the_operator_at_any_instant_changes_nothing_in_the_outcome() {
    let env = test_env("resume").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let reference = reference_outcome(&env, &api).await;

    // 20 runs, each killed at a different instant (from before the first status write to
    // after Ready) and restarted.
    let mut landed: Vec<Option<Phase>> = Vec::new();
    for (i, delay) in delays(0x5eed, 20, 500).into_iter().enumerate() {
        let run = (format!("run-{i}"), Kill::After(delay));
        let at = killed_run(&env, &api, (&run.0, run.1), &reference).await;
        landed.push(at);
    }
    // A kill lands in every state the status passes through (nothing written yet; the write
    // before the services; Ready): where the random instants missed one, a run is killed
    // there on purpose (a few tries: the operator may move on between the read and the kill).
    for target in [None, Some(Phase::DeployingInfra), Some(Phase::Ready)] {
        for attempt in 0..5 {
            if landed.contains(&target) {
                break;
            }
            let name = format!(
                "at-{}-{attempt}",
                target
                    .map_or("start".into(), |p| p.to_string())
                    .to_lowercase()
            );
            let at = killed_run(&env, &api, (&name, Kill::At(target)), &reference).await;
            landed.push(at);
        }
    }
    eprintln!("figure: kills landed in {landed:?}");
    for target in [None, Some(Phase::DeployingInfra), Some(Phase::Ready)] {
        assert!(
            landed.contains(&target),
            "no kill landed in {target:?}: {landed:?}"
        );
    }
}

/// The phase persisted when the operator stops at `when:phase` on the happy path. A turn writes
/// its steps together until a phase writes outside the status, or claims must be confirmed:
/// the test's operator serves one namespace, so it confirms (others may share its hosts), and
/// the first write holds Gathering and Extracting (the claims, before they are confirmed), the
/// second DeployingInfra (before any service is applied), the third Labeling and Ready.
fn persisted_at(when: &str, phase: Phase) -> Option<Phase> {
    match (when, phase) {
        ("before", Phase::Gathering | Phase::Extracting) => None,
        ("after", Phase::Gathering | Phase::Extracting) => Some(Phase::Extracting),
        ("before", Phase::DeployingInfra) => Some(Phase::Extracting),
        ("after", Phase::DeployingInfra) => Some(Phase::DeployingInfra),
        ("before", Phase::Labeling | Phase::Ready) => Some(Phase::DeployingInfra),
        ("after", Phase::Labeling | Phase::Ready) => Some(Phase::Ready),
        other => panic!("no boundary {other:?} on the happy path"),
    }
}

#[tokio::test]
async fn a_crash_at_every_phase_boundary_changes_nothing_in_the_outcome() {
    let env = test_env("boundaries").await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let reference = reference_outcome(&env, &api).await;

    let boundaries = [
        Phase::Gathering,
        Phase::Extracting,
        Phase::DeployingInfra,
        Phase::Labeling,
        Phase::Ready,
    ];
    for (i, (when, phase_at)) in boundaries
        .iter()
        .flat_map(|p| [("before", *p), ("after", *p)])
        .enumerate()
    {
        let point = format!("{when}:{phase_at}");
        let name = format!("boundary-{i}");
        let operator = Operator::with_failpoint(&env, Some(&point));
        api.create(&PostParams::default(), &resumable(&env, &name))
            .await
            .unwrap();
        operator.crashed(&point).await;
        let persisted = phase(api.get_opt(&name).await.unwrap().as_ref());
        assert_eq!(
            persisted,
            persisted_at(when, phase_at),
            "{point}: the status at the crash"
        );

        let operator = Operator::start(&env);
        let ready = wait_for(&api, &name, &format!("{point}: Ready after restart"), |c| {
            phase(c) == Some(Phase::Ready)
        })
        .await
        .unwrap();
        assert_uninterrupted_story(&ready.status.unwrap(), &point);
        assert_eq!(
            outcome(&env, &api, &name).await,
            reference,
            "{point}: the same outcome"
        );
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        wait_for(&api, &name, &format!("{point}: deleted"), |c| c.is_none()).await;
        operator.kill();
    }
}

/// The sample tenant taken to Ready by a real `sip` process, which is then killed.
async fn ready_then_stopped(prefix: &str) -> (TestEnv, Api<SIPCluster>) {
    let env = test_env(prefix).await;
    load_hosts(&env).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let operator = Operator::start(&env);
    api.create(&PostParams::default(), &resumable(&env, "tenant"))
        .await
        .unwrap();
    wait_for(&api, "tenant", "Ready", |c| phase(c) == Some(Phase::Ready)).await;
    operator.kill();
    (env, api)
}

#[tokio::test]
async fn a_service_object_deleted_while_the_operator_is_down_is_restored_when_it_returns() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    let (env, api) = ready_then_stopped("down-drift").await;

    // Deleted while no operator runs: no watch sees it go.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.namespace);
    deployments
        .delete("tenant-lb-control-plane", &DeleteParams::default())
        .await
        .unwrap();
    services
        .delete("tenant-jump-host", &DeleteParams::default())
        .await
        .unwrap();

    // The returning operator's first check of the cluster finds them missing.
    let operator = Operator::start(&env);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let deployment = deployments
            .get_opt("tenant-lb-control-plane")
            .await
            .unwrap();
        let service = services.get_opt("tenant-jump-host").await.unwrap();
        if deployment.is_some() && service.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restored: Deployment {}, Service {}",
            deployment.is_some(),
            service.is_some()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The history names what was missing.
    told(&api, "tenant", "ServiceDrift", |m| {
        m.contains("Deployment tenant-lb-control-plane missing")
            && m.contains("Service tenant-jump-host missing")
    })
    .await;
    operator.kill();
}

#[tokio::test]
async fn service_objects_edited_while_the_operator_is_down_are_repaired_when_it_returns() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let (env, api) = ready_then_stopped("down-edit").await;

    // Edited as a person would while no operator runs: `kubectl edit` on a Deployment and on
    // a Secret of the services.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
    };
    let want_image = image(&deployments.get("tenant-lb-control-plane").await.unwrap());
    let want_config = secrets.get("tenant-lb-control-plane").await.unwrap().data;
    let by_hand = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let container = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "haproxy", "image": "example.invalid/not-haproxy:1"}
    ]}}}});
    deployments
        .patch(
            "tenant-lb-control-plane",
            &by_hand,
            &Patch::Strategic(container),
        )
        .await
        .unwrap();
    secrets
        .patch(
            "tenant-lb-control-plane",
            &by_hand,
            &Patch::Merge(json!({"stringData": {"haproxy.cfg": "global\n"}})),
        )
        .await
        .unwrap();

    // The returning operator sees someone else wrote them after its last apply.
    let operator = Operator::start(&env);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now_image = image(&deployments.get("tenant-lb-control-plane").await.unwrap());
        let now_config = secrets.get("tenant-lb-control-plane").await.unwrap().data;
        if now_image == want_image && now_config == want_config {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not repaired: image {now_image:?}, config restored {}",
            now_config == want_config
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The history names what was edited.
    told(&api, "tenant", "ServiceDrift", |m| {
        m.contains("Deployment tenant-lb-control-plane changed while the operator was not running")
    })
    .await;
    operator.kill();
}

#[tokio::test]
async fn a_history_edited_by_hand_is_bridged_once_and_keeps_its_records() {
    use kube::api::{Patch, PatchParams};
    let (env, api) = ready_then_stopped("edited-history").await;

    // `kubectl edit --subresource=status` while no operator runs: a record made to start in
    // a phase the one before it did not lead to.
    let mut status = api.get("tenant").await.unwrap().status.unwrap();
    let reasons: Vec<String> = status.history.iter().map(|r| r.reason.clone()).collect();
    status.history[2].from = Some(Phase::Labeling);
    api.patch_status(
        "tenant",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"history": status.history}})),
    )
    .await
    .unwrap();

    let (operator, metrics) = crate::common::start_metered_operator(&env);
    wait_for(&api, "tenant", "the history bridged", |c| {
        c.is_some_and(|c| !crate::common::history_of(c, "HistoryRepaired").is_empty())
    })
    .await;
    let repaired = api.get("tenant").await.unwrap();
    assert_eq!(phase(Some(&repaired)), Some(Phase::Ready));
    let history = &repaired.status.as_ref().unwrap().history;
    let kept: Vec<String> = history
        .iter()
        .map(|r| r.reason.clone())
        .filter(|r| r != "HistoryRepaired")
        .collect();
    assert_eq!(kept, reasons, "every record kept, in order");
    let bridge = history
        .iter()
        .position(|r| r.reason == "HistoryRepaired")
        .unwrap();
    assert_eq!(bridge, 2, "the bridge stands where the log broke");
    assert_eq!(history[bridge].to, Phase::Labeling);
    assert_eq!(history[bridge].from, Some(history[1].to));

    // Later turns find a log that replays: nothing more is bridged.
    crate::common::poke_and_wait(&api, "tenant", "1", &metrics).await;
    crate::common::poke_and_wait(&api, "tenant", "2", &metrics).await;
    let after = api.get("tenant").await.unwrap();
    assert_eq!(
        crate::common::history_of(&after, "HistoryRepaired").len(),
        1
    );
    assert_eq!(&after.status.unwrap().history, history);
    operator.abort();
}

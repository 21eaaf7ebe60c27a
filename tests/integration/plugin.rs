//! `kubectl sip` against the control plane, with a token bound only to the shipped read-only
//! role `sip-viewer` (so any write would fail): what `plan` prints is what the operator then
//! does, for a new cluster, a scale-up and a scale-down; an unschedulable plan exits 2 with the
//! counts the operator's `Unschedulable` reason gives; `hosts` and `why` tell the same story.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sip::api::{Phase, SIPCluster};

use crate::common::{
    TestEnv, load_hosts, phase, sample_cluster, start_operator, test_env, token_of, wait_for,
    yaml_documents,
};

/// A kubeconfig for a ServiceAccount bound (cluster-wide) to the shipped `sip-viewer` role
/// under a name of this test's own, its token in a file beside it.
async fn viewer_kubeconfig(env: &TestEnv, dir: &Path) -> PathBuf {
    let role = format!("sip-viewer-{}", env.namespace);
    let mut viewer = yaml_documents(include_str!("../../manifests/base/viewer-role.yaml"))
        .into_iter()
        .next()
        .unwrap();
    viewer["metadata"]["name"] = json!(role);
    let docs = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "planner"}}),
        viewer,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "planner", "namespace": env.namespace}],
        }),
    ];
    let text: Vec<String> = docs.iter().map(Value::to_string).collect();
    sip_envtest::apply_yaml(&env.client, &text.join("\n---\n"), &env.namespace)
        .await
        .unwrap();
    let token = token_of(env, &env.namespace, "planner").await;
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let mut config = kube::config::Kubeconfig::read_from(&env.cp.kubeconfig).unwrap();
    for named in &mut config.auth_infos {
        named.auth_info = Some(kube::config::AuthInfo {
            token_file: Some(token_file.display().to_string()),
            ..Default::default()
        });
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_norway::to_string(&config).unwrap()).unwrap();
    path
}

/// Runs `kubectl-sip` with `args`: its exit code and standard output.
fn plugin(env: &TestEnv, kubeconfig: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-sip"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", &env.namespace, "--hosts-namespace", &env.namespace])
        .args(args)
        .output()
        .expect("run kubectl-sip");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().expect("exited");
    assert!(
        code != 1,
        "kubectl-sip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

/// `kubectl sip plan -f` on `cluster` written to a manifest in `dir`, with `args` after.
fn plan_manifest(
    env: &TestEnv,
    kubeconfig: &Path,
    (dir, cluster): (&Path, &SIPCluster),
    args: &[&str],
) -> (i32, String) {
    let manifest = dir.join(format!(
        "{}.yaml",
        cluster.metadata.name.as_deref().unwrap()
    ));
    std::fs::write(&manifest, serde_norway::to_string(cluster).unwrap()).unwrap();
    let file = manifest.to_str().unwrap();
    plugin(env, kubeconfig, &[&["plan", "-f", file][..], args].concat())
}

/// The tenant's workers set to `active + standby`, as a user edits the spec.
async fn set_workers(api: &Api<SIPCluster>, active: u32, standby: u32) {
    let count =
        json!({"spec": {"nodes": {"Worker": {"count": {"active": active, "standby": standby}}}}});
    api.patch("tenant", &PatchParams::default(), &Patch::Merge(count))
        .await
        .unwrap();
}

/// `(role, host)` pairs under `what` ("keep", "add" or "release") in a JSON plan.
fn planned(plan: &Value, what: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = plan["roles"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r[what].as_array().unwrap().iter().map(|l| {
                (
                    r["role"].as_str().unwrap().to_string(),
                    l["host"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    pairs.sort();
    pairs
}

/// The members in `cluster`'s ledger as `(role, namespace/name)`.
fn members(cluster: &SIPCluster) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = cluster
        .status
        .iter()
        .flat_map(|s| &s.hosts)
        .filter(|h| h.state.is_member())
        .map(|h| {
            (
                h.role.as_str().into(),
                format!("{}/{}", h.namespace, h.name),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

fn union(mut a: Vec<(String, String)>, b: Vec<(String, String)>) -> Vec<(String, String)> {
    a.extend(b);
    a.sort();
    a
}

/// The sample with its control-plane balancer only (no jump host, Dex or worker balancer).
fn lean(env: &TestEnv, name: &str, edit: impl FnOnce(&mut Value)) -> SIPCluster {
    sample_cluster(env, name, |m| {
        let services = m["spec"]["services"].as_object_mut().unwrap();
        for service in ["auth", "jumpHost", "loadBalancerWorker"] {
            services.remove(service);
        }
        edit(m);
    })
}

async fn wait_for_members(api: &Api<SIPCluster>, name: &str, want: &[(String, String)]) {
    wait_for(api, name, "Ready with the planned members", |c| {
        c.is_some_and(|c| {
            phase(Some(c)) == Some(Phase::Ready)
                && c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
                && members(c) == want
        })
    })
    .await;
}

#[tokio::test]
async fn the_plan_is_what_the_operator_then_does() {
    let env = test_env("plugin").await;
    load_hosts(&env).await;
    let dir = std::env::temp_dir().join(format!("sip-plugin-{}", env.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = viewer_kubeconfig(&env, &dir).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);

    // The token is really read-only: a write with it is refused.
    let viewer = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    // A valid object, so only the missing right can refuse it.
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "written"}})).unwrap();
    let write = Api::<ConfigMap>::namespaced(viewer, &env.namespace)
        .create(&PostParams::default(), &map)
        .await;
    assert!(
        matches!(write, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{write:?}"
    );

    // 1. A new cluster: planned from its manifest, then created.
    let tenant = lean(&env, "tenant", |_| {});
    let (code, out) = plan_manifest(&env, &kubeconfig, (&dir, &tenant), &["-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["schedulable"], true);
    let chosen = planned(&first, "add");
    assert_eq!(chosen.len(), 4, "{out}");
    let (_, text) = plan_manifest(&env, &kubeconfig, (&dir, &tenant), &[]);
    assert!(
        text.contains("the pool satisfies it (4 to add, 0 to release)"),
        "{text}"
    );

    let operator = start_operator(&env);
    api.create(&PostParams::default(), &tenant).await.unwrap();
    wait_for_members(&api, "tenant", &chosen).await;

    // A cluster in another namespace, served by no operator here, whose ledger claims wk-3
    // before any label says so (as between a Gathering and its Labeling): the plan must not
    // offer it, as the operator will not take it.
    let other = sip_envtest::create_namespace(&env.client, "plugin-other")
        .await
        .unwrap();
    let holder = lean(&env, "holder", |m| {
        m["metadata"]["namespace"] = json!(other)
    });
    let holders: Api<SIPCluster> = Api::namespaced(env.client.clone(), &other);
    holders
        .create(&PostParams::default(), &holder)
        .await
        .unwrap();
    let claim = json!({"status": {"hosts": [{
        "name": "wk-3", "namespace": env.namespace, "role": "Worker", "state": "Chosen",
    }]}});
    holders
        .patch_status("holder", &PatchParams::default(), &Patch::Merge(claim))
        .await
        .unwrap();

    // 2. Scale up the workers: planned with --set, then patched.
    let up = [
        "--set",
        "Worker.count.active=3",
        "--set",
        "Worker.count.standby=1",
    ];
    let (code, out) = plugin(
        &env,
        &kubeconfig,
        &[&["plan", "tenant", "-o", "json"][..], &up].concat(),
    );
    assert_eq!(code, 0, "{out}");
    let grow: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(planned(&grow, "keep"), chosen);
    assert_eq!(planned(&grow, "add").len(), 2, "{out}");
    assert!(planned(&grow, "release").is_empty());
    let wk3 = format!("{}/wk-3", env.namespace);
    assert!(
        planned(&grow, "add").iter().all(|(_, h)| *h != wk3),
        "{out}"
    );
    set_workers(&api, 3, 1).await;
    let grown = union(planned(&grow, "keep"), planned(&grow, "add"));
    wait_for_members(&api, "tenant", &grown).await;

    // 3. Scale down to one worker: the plan names the releases.
    let (code, out) = plugin(
        &env,
        &kubeconfig,
        &[
            "plan",
            "tenant",
            "-o",
            "yaml",
            "--set",
            "Worker.count.active=1",
            "--set",
            "Worker.count.standby=0",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let shrink: Value = serde_norway::from_str(&out).unwrap();
    assert_eq!(planned(&shrink, "release").len(), 3, "{out}");
    assert!(planned(&shrink, "add").is_empty());
    set_workers(&api, 1, 0).await;
    wait_for_members(&api, "tenant", &planned(&shrink, "keep")).await;

    // 4. More control-plane hosts than racks: exit 2, the operator's own counts.
    let greedy = lean(&env, "greedy", |m| {
        m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 9, "standby": 0});
    });
    let (code, out) = plan_manifest(&env, &kubeconfig, (&dir, &greedy), &["-o", "json"]);
    assert_eq!(code, 2, "{out}");
    let blocked: Value = serde_json::from_str(&out).unwrap();
    let control_plane = &blocked["roles"][0]["unschedulable"];
    assert_eq!(control_plane["counts"]["claimedElsewhere"], 2, "{out}");
    let message = control_plane["message"].as_str().unwrap().to_string();
    let held: Vec<&str> = control_plane["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["by"].as_str().unwrap())
        .collect();
    let by_tenant = format!("SIPCluster {}/tenant (ledger)", env.namespace);
    assert_eq!(held, [by_tenant.as_str(); 2], "{out}");
    api.create(&PostParams::default(), &greedy).await.unwrap();
    let seen = wait_for(&api, "greedy", "Unschedulable", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "Unschedulable"))
    })
    .await
    .unwrap();
    let condition = seen
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.reason == "Unschedulable")
        .unwrap();
    assert!(
        condition.message.contains(&message),
        "the operator says {:?}, the plan said {message:?}",
        condition.message
    );

    // 5. The inventory and the stories.
    let (code, hosts) = plugin(&env, &kubeconfig, &["hosts"]);
    assert_eq!(code, 0);
    let tenant_rows: Vec<&str> = hosts
        .lines()
        .filter(|l| l.contains(&format!("{}/tenant", env.namespace)))
        .collect();
    assert_eq!(tenant_rows.len(), 3, "{hosts}");
    assert!(
        hosts.contains("worker: 4 free, 2 claimed, 0 unusable"),
        "{hosts}"
    );
    let (_, story) = plugin(&env, &kubeconfig, &["why", "tenant"]);
    assert!(
        story.starts_with(&format!("SIPCluster {}/tenant: Ready", env.namespace)),
        "{story}"
    );
    let (_, story) = plugin(&env, &kubeconfig, &["why", "greedy"]);
    assert!(
        story.contains("Unschedulable: ControlPlane: wanted 9"),
        "{story}"
    );

    // kubectl runs it as a plugin (`kubectl-sip` on PATH is `kubectl sip`), which finds the
    // viewer's kubeconfig in $KUBECONFIG as kubectl does.
    let binary = Path::new(env!("CARGO_BIN_EXE_kubectl-sip"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env.cp.bin_dir.join("kubectl"))
        .env("PATH", path)
        .env("KUBECONFIG", &kubeconfig)
        .args(["sip", "hosts", "--hosts-namespace", &env.namespace])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), hosts);

    operator.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

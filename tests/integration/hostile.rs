//! Hostile input from one namespace against the operator as it ships (`sip run`, unscoped, its
//! Lease held): template ConfigMaps that nest too deep, loop too long, allocate gigabytes or
//! fill a ConfigMap each cost their own cluster an `InfraServiceFailure` naming the ConfigMap,
//! while the operator stays up and under its memory limit, keeps its Lease, and takes another
//! namespace's cluster to Ready.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};
use sip::services::{CONTROL_PLANE_TEMPLATE_KEY, WORKER_TEMPLATE_KEY, sandbox};
use sip_envtest::{ControlPlane, create_namespace};

use crate::common::{SAMPLE_SIPCLUSTER, document_of_kind, load_hosts_into, phase};

/// The pod's memory limit in the shipped manifests: the operator must stay under it.
const POD_LIMIT_MIB: u64 = 256;

/// A cluster of one control-plane and one worker host, its two balancers only.
fn small_cluster(namespace: &str, name: &str, worker_port: u16) -> SIPCluster {
    let mut m = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    m["metadata"] = json!({"name": name, "namespace": namespace});
    for role in ["ControlPlane", "Worker"] {
        m["spec"]["nodes"][role]["count"] = json!({"active": 1, "standby": 0});
    }
    let services = &mut m["spec"]["services"];
    services.as_object_mut().unwrap().remove("jumpHost");
    services.as_object_mut().unwrap().remove("auth");
    services["loadBalancerControlPlane"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    services["loadBalancerWorker"][0]["nodePortRange"] =
        json!({"start": worker_port, "end": worker_port + 9});
    serde_json::from_value(m).unwrap()
}

fn template_map(name: &str, key: &str, text: String, syntax: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"sip.airshipit.org/template-syntax": syntax}},
        "data": {key: text},
    }))
    .unwrap()
}

/// The templates of the battery, by namespace: `(control-plane template, worker template)`
/// with their syntax, and what the cluster's failure must say.
type Battery = Vec<(
    &'static str,
    (String, &'static str),
    (String, &'static str),
    [&'static str; 2],
)>;

fn battery() -> Battery {
    // Both under the 64 KiB template cap, so the engines' depth limits answer.
    let nested_go = format!("{}x{}", "{{if 1}}".repeat(3_000), "{{end}}".repeat(3_000));
    let nested_jinja = format!(
        "{}x{}",
        "{% if 1 %}".repeat(2_500),
        "{% endif %}".repeat(2_500)
    );
    // Ten nested ranges over a ten-port worker range: 10^10 iterations, no output.
    let steps_go = format!(
        "{}x{}",
        "{{range .ContainerPorts}}".repeat(10),
        "{{end}}".repeat(10)
    );
    // Each line doubles the last: 100 MB, 200 MB, 400 MB, never written out.
    let memory_jinja =
        "{% set a = 'x' * 100000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c | length }}\n"
            .to_string();
    let output_jinja = "{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}".to_string();
    // Just under etcd's 1.5 MiB request limit, far over the template cap.
    let full = format!("# {}\n", "padding ".repeat(1_000_000 / 8));
    vec![
        (
            "nesting",
            (nested_go, "go"),
            (nested_jinja, "jinja"),
            ["nested more than 100 deep", "recursion"],
        ),
        (
            "steps",
            (full, "jinja"),
            (steps_go, "go"),
            ["byte limit", "steps"],
        ),
        (
            "memory",
            (memory_jinja, "jinja"),
            (output_jinja, "jinja"),
            ["192 MiB of memory", "1048576 bytes"],
        ),
    ]
}

/// The Lease's last renewal, asserting the battery's operator holds it.
async fn renewal(leases: &Api<Lease>) -> Option<String> {
    let spec = leases.get_opt("sip-operator").await.unwrap()?.spec?;
    assert_eq!(spec.holder_identity.as_deref(), Some("battery"));
    spec.renew_time.map(|t| t.0.to_string())
}

#[tokio::test]
async fn hostile_templates_cost_only_their_own_cluster() {
    // A control plane of its own: the operator runs unscoped, as shipped (hosts in one
    // namespace, tenants in others).
    let cp = ControlPlane::start().await.expect("a control plane");
    let admin = cp.client().await.unwrap();
    let hosts_ns = create_namespace(&admin, "metal3").await.unwrap();
    load_hosts_into(&admin, &hosts_ns).await;
    let system = create_namespace(&admin, "sip-system").await.unwrap();

    let mut hostile = Vec::new();
    for (i, (what, (cp_text, cp_syntax), (w_text, w_syntax), _)) in
        battery().into_iter().enumerate()
    {
        let ns = create_namespace(&admin, what).await.unwrap();
        let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
        for map in [
            template_map(
                "loadbalancercontrolplane",
                CONTROL_PLANE_TEMPLATE_KEY,
                cp_text,
                cp_syntax,
            ),
            template_map("loadbalancerworker", WORKER_TEMPLATE_KEY, w_text, w_syntax),
        ] {
            maps.create(&PostParams::default(), &map).await.unwrap();
        }
        let api: Api<SIPCluster> = Api::namespaced(admin.clone(), &ns);
        api.create(
            &PostParams::default(),
            &small_cluster(&ns, "hostile", 30010 + 10 * i as u16),
        )
        .await
        .unwrap();
        hostile.push((ns, api));
    }

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut operator = Kill(
        Command::new(env!("CARGO_BIN_EXE_sip"))
            .args(["run", "--kubeconfig"])
            .arg(&cp.kubeconfig)
            .args(["--log", "warn", "--metrics-address", "127.0.0.1:0"])
            .args(["--lease-namespace", &system, "--instance", "battery"])
            // Renewed about every second, so the battery's few seconds see several.
            .args(["--lease-duration", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sip run"),
    );
    let pid = operator.0.id();

    // Every hostile cluster fails on its own templates, each naming its ConfigMap.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &system);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut renewals = std::collections::BTreeSet::new();
    let expectations: Vec<[&str; 2]> = battery().iter().map(|b| b.3).collect();
    let mut failed = vec![false; hostile.len()];
    while failed.iter().any(|f| !f) {
        assert!(
            Instant::now() < deadline,
            "not every hostile cluster failed: {failed:?}"
        );
        renewals.extend(renewal(&leases).await);
        for (i, (ns, api)) in hostile.iter().enumerate() {
            let Some(c) = api.get_opt("hostile").await.unwrap() else {
                continue;
            };
            let ready = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| (c.reason.clone(), c.message.clone()))
                .unwrap_or_default();
            if ready.0 == "InfraServiceFailure" {
                let message = ready.1;
                assert!(
                    message.contains(&format!("ConfigMap {ns}/loadbalancer")),
                    "{ns}: the failure names the ConfigMap: {message}"
                );
                for needle in expectations[i] {
                    assert!(
                        message.contains(needle),
                        "{ns}: the failure says {needle:?}: {message}"
                    );
                }
                failed[i] = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Meanwhile, and after, another namespace's cluster goes to Ready.
    let victim_ns = create_namespace(&admin, "tenant").await.unwrap();
    let victims: Api<SIPCluster> = Api::namespaced(admin.clone(), &victim_ns);
    victims
        .create(
            &PostParams::default(),
            &small_cluster(&victim_ns, "tenant", 30100),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(victims.get_opt("tenant").await.unwrap().as_ref()) != Some(Phase::Ready) {
        assert!(
            Instant::now() < deadline,
            "the other namespace's cluster never became Ready"
        );
        renewals.extend(renewal(&leases).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Three lease durations more, the hostile clusters retried meanwhile.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        renewals.extend(renewal(&leases).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The operator never went down, never ran over its pod's memory limit, and renewed.
    assert!(
        operator.0.try_wait().unwrap().is_none(),
        "the operator exited"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(
        peak_kib < (POD_LIMIT_MIB << 10) / 2,
        "the operator's peak memory was {peak_kib} KiB"
    );
    assert!(
        renewals.len() >= 4,
        "the Lease was renewed during the battery: {renewals:?}"
    );
    eprintln!(
        "operator peak RSS {peak_kib} KiB; {} renewals seen",
        renewals.len()
    );
}

#[test]
fn the_renderer_child_contains_what_the_engines_cannot() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_sip"));
    let job = |syntax: &str, text: &str| -> sandbox::Job {
        serde_json::from_value(json!({
            "syntax": syntax, "text": text,
            "data": {"servers": [{"name": "a", "ip": "10.0.0.1"}]},
            "go": {"ports": [["http", 6443]], "servers": [["a", "10.0.0.1"]]},
        }))
        .unwrap()
    };
    assert_eq!(
        sandbox::render(
            exe,
            &job("jinja", "{% for s in servers %}{{ s.name }}{% endfor %}")
        ),
        Ok("a".to_string())
    );
    assert_eq!(
        sandbox::render(exe, &job("go", "{{range .Servers}}{{.Name}}{{end}}")),
        Ok("a".to_string())
    );
    let started = Instant::now();
    let memory = sandbox::render(
        exe,
        &job(
            "jinja",
            "{% set a = 'x' * 100000000 %}{% set b = a ~ a %}{{ b | length }}",
        ),
    )
    .unwrap_err();
    assert!(memory.contains("192 MiB"), "{memory}");
    let output = sandbox::render(exe, &job("jinja", "{{ 'x' * 2000000 }}")).unwrap_err();
    assert!(output.contains("1048576 bytes"), "{output}");
    let error = sandbox::render(exe, &job("jinja", "{{ nothing }}")).unwrap_err();
    assert!(error.contains("undefined"), "{error}");
    let at_limit = sandbox::render(exe, &job("jinja", "{{ 'x' * 1048576 }}"));
    assert_eq!(at_limit.map(|c| c.len()), Ok(1_048_576));
    assert!(
        started.elapsed() < sandbox::DEADLINE,
        "{:?}",
        started.elapsed()
    );
    // Within the engine's fuel and the memory limit, but about a minute of CPU here (a 5 MB
    // replace, 30,000 times; 3,000 already passed the 5 s limit, so a machine ten times faster
    // still does): the kernel's CPU limit or the parent's deadline, whichever first, ends it.
    let started = Instant::now();
    let busy = "{% set s = 'ab' * 2500000 %}{% for i in range(30000) %}{% set t = s | replace('a', 'c') %}{% endfor %}done";
    let cpu = sandbox::render(exe, &job("jinja", busy)).unwrap_err();
    assert!(
        cpu.contains("5 s") && cpu.contains("simplify its loops"),
        "{cpu}"
    );
    assert!(
        started.elapsed() < sandbox::DEADLINE + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

//! A tenant's support services as pods on the node: the sample's shape taken to Ready, its
//! pods Running where they belong, the control-plane balancer and the jump host used from the
//! host through their Services' node ports (kube-proxy), and all of it gone with the SIPCluster.
//! The tenant's hosts (fake apiservers, sshd, a Redfish emulator) sit in a sandbox plugged into
//! the node's bridge, on addresses outside the pods' range.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};
use sip::services::meta::object_name;
use sip::services::{ServiceId, ServiceKind};
use sip_envtest::node::{BRIDGE, NODE_IP, NODE_NAME};

use super::{TENANT_LABEL, curl, namespace_objects, node_env, ready, wait_for_pods};
use crate::common::{TestEnv, host_labels, sample_cluster, wait_for};
use crate::sandbox::{Sandbox, quote, repo_path};
use crate::tenant::{Keys, Tenant, node_keys};

const CLUSTER: &str = "tenant";
/// The cluster's objects, by the labels the operator sets.
const CHILDREN: &str = "sip.airshipit.org/cluster-name=tenant";

/// Hosts and BMCs on the bridge, above the pods' range (.10-.199).
fn tenant(namespace: &str, hosts: [&'static str; 5]) -> Tenant {
    Tenant {
        hosts: [
            (
                "cp-1",
                "control-plane",
                hosts[0],
                "5a1e0000-0000-4000-8000-000000000011",
            ),
            (
                "cp-2",
                "control-plane",
                hosts[1],
                "5a1e0000-0000-4000-8000-000000000012",
            ),
            (
                "wk-1",
                "worker",
                hosts[2],
                "5a1e0000-0000-4000-8000-000000000021",
            ),
            (
                "wk-2",
                "worker",
                hosts[3],
                "5a1e0000-0000-4000-8000-000000000022",
            ),
        ],
        bmc: hosts[4],
        label: Some((TENANT_LABEL, namespace.to_string())),
    }
}

/// Two node ports of the node cluster no other of its tests uses, in the band its API server
/// never picks from itself (its range is 30000-32767: the band is the lowest 86). Its ports are
/// its own: the shared control plane's tests allocate theirs apart.
fn node_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        block < 40,
        "the node cluster's static node-port band is used up"
    );
    30000 + block * 2
}

/// The sample SIPCluster on sip's default images, taking only hosts labeled for this test.
pub fn tenant_cluster(
    env: &TestEnv,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> SIPCluster {
    let namespace = env.namespace.clone();
    let base = node_ports();
    sample_cluster(env, name, |m| {
        m["spec"]["services"]["loadBalancerWorker"][0]["nodePortRange"] =
            json!({"start": base, "end": base + 1});
        for service in ["jumpHost", "loadBalancerControlPlane", "loadBalancerWorker"] {
            m["spec"]["services"][service][0]
                .as_object_mut()
                .unwrap()
                .remove("image");
        }
        for role in ["ControlPlane", "Worker"] {
            m["spec"]["nodes"][role]["labelSelector"]["matchLabels"][TENANT_LABEL] =
                json!(namespace);
        }
        edit(m);
    })
}

/// The node port of the Service of the cluster's `kind`.
async fn node_port(env: &TestEnv, kind: ServiceKind) -> u16 {
    let name = object_name(CLUSTER, ServiceId { kind, index: 0 });
    let service = Api::<Service>::namespaced(env.client.clone(), &env.namespace)
        .get(&name)
        .await
        .unwrap();
    service.spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("a NodePort Service") as u16
}

#[tokio::test]
async fn the_tenant_services_run_on_the_node_and_serve_through_node_ports() {
    let Some(env) = node_env("node-services").await else {
        return;
    };
    let tenant = tenant(
        &env.namespace,
        [
            "198.18.0.211",
            "198.18.0.212",
            "198.18.0.221",
            "198.18.0.222",
            "198.18.0.200:8000",
        ],
    );
    let keys = Keys::make(&std::env::temp_dir().join(format!("sip-keys-{}", env.namespace)));
    tenant.create_hosts(&env).await;
    node_keys(&env, std::fs::read(&keys.node.0).unwrap()).await;
    let user_key = keys.user.1.clone();
    let cluster = tenant_cluster(&env, CLUSTER, |m| {
        m["spec"]["services"]["jumpHost"][0]["sshAuthorizedKeys"] = json!([user_key]);
    });
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Everything in the namespace before the tenant: what its deletion must leave, whatever
    // kind, label or owner an object of the operator's has.
    let before = namespace_objects(&env.client, &env.namespace).await;
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_for(&api, CLUSTER, "Ready", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.phase == Some(Phase::Ready))
    })
    .await;

    // The lister sees the operator's objects, whatever their kind: the diff at the end can fail.
    let during = namespace_objects(&env.client, &env.namespace).await;
    let added: Vec<&String> = during.difference(&before).collect();
    for kind in ["apps/Deployment/", "/Service/", "/ConfigMap/", "/Secret/"] {
        assert!(
            added
                .iter()
                .any(|o| o.starts_with(kind) || o.contains(kind)),
            "no {kind} of the tenant's among {added:?}"
        );
    }

    // Every service's pod Running and ready; the load balancers on the control-plane node.
    let pods = wait_for_pods(
        &env.client,
        (&env.namespace, CHILDREN),
        "the three services' pods ready",
        Duration::from_secs(120),
        |pods| pods.len() == 3 && pods.iter().all(ready),
    )
    .await;
    let node = Api::<Node>::all(env.client.clone())
        .get(NODE_NAME)
        .await
        .unwrap();
    assert!(
        node.metadata
            .labels
            .unwrap_or_default()
            .contains_key("node-role.kubernetes.io/control-plane"),
        "the node is labeled as control plane"
    );
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE_NAME),
            "{name} runs on the node"
        );
        if name.contains("-lb-") {
            assert!(
                spec.node_selector
                    .as_ref()
                    .is_some_and(|s| s.contains_key("node-role.kubernetes.io/control-plane")),
                "{name} is placed on control-plane nodes"
            );
        }
    }

    // The tenant's side: apiservers on the control-plane hosts, BMCs, the nodes' sshd.
    let mut side = Sandbox::start("node-tenant", None);
    let addresses = tenant.addresses(24);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    side.plug_into(BRIDGE, &addresses);
    let cert = rcgen::generate_simple_self_signed(vec!["kube-apiserver".to_string()]).unwrap();
    let (cert_path, key_path) = (side.dir.join("tls.crt"), side.dir.join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let fake = repo_path("tests/integration/fixtures/fake_backend.py");
    let mut apiservers = BTreeMap::new();
    for (name, _, ip, _) in &tenant.hosts[..2] {
        let script = format!(
            "python3 {} --name {name} --listen {ip}:6443 --cert {} --key {}",
            fake.display(),
            cert_path.display(),
            key_path.display()
        );
        apiservers.insert(*name, side.spawn(&format!("apiserver-{name}"), &script));
    }
    tenant.start_bmcs(&mut side);
    tenant.start_nodes(&mut side, &keys.node.1);

    // The control-plane balancer, from the host through its node port: both apiservers serve;
    // one stopped is taken out.
    let frontend = format!(
        "https://{NODE_IP}:{}/",
        node_port(&env, ServiceKind::LoadBalancerControlPlane).await
    );
    let answers = |count: usize| -> Vec<String> {
        (0..count)
            .map(|_| curl(&["-k", &frontend]).1.trim().to_string())
            .collect()
    };
    let both = until(
        Duration::from_secs(60),
        "both apiservers answering through the node port",
        || {
            let seen = answers(8);
            (
                ["cp-1", "cp-2"]
                    .iter()
                    .all(|cp| seen.iter().any(|s| s == cp)),
                seen,
            )
        },
    );
    eprintln!("through {frontend}: {both:?}");
    side.stop(apiservers["cp-2"]);
    until(
        Duration::from_secs(40),
        "cp-2 taken out (inter 5s, fall 4)",
        || {
            let seen = answers(10);
            (seen.iter().all(|s| s == "cp-1"), seen)
        },
    );

    // The jump host, from the host through its node port.
    let ssh_port = node_port(&env, ServiceKind::JumpHost).await.to_string();
    let ssh = |key: &str, command: &str| {
        std::process::Command::new("ssh")
            .args(["-i", key, "-p", &ssh_port])
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg(format!("ubuntu@{NODE_IP}"))
            .arg(command)
            .output()
            .expect("run ssh")
    };
    let ok = |command: &str| {
        let out = ssh(&keys.user.0, command);
        assert!(
            out.status.success(),
            "as the user, `{command}` failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    until(
        Duration::from_secs(30),
        "ssh through the jump host's node port",
        || {
            let out = ssh(&keys.user.0, "id -un");
            (
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ubuntu",
                out.status,
            )
        },
    );
    let refused = ssh(&keys.stranger.0, "true");
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("Permission denied (publickey)"),
        "a key not listed is refused: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let list = ok("sip-hosts list");
    for (name, _, ip, system) in tenant.hosts {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name}\t"))
                && l.contains(ip)
                && l.contains(system)),
            "{name} in the host list: {list}"
        );
    }
    let reached = ok(&format!(
        "ssh wk-1 {}",
        quote("id -un; echo $SSH_CONNECTION")
    ));
    assert!(
        reached.contains(" 198.18.0.221 22"),
        "the jump host reaches wk-1: {reached}"
    );
    assert_eq!(ok("sip-hosts status cp-1").trim(), "On");
    assert_eq!(
        ok("sip-hosts power-off cp-1").trim(),
        "cp-1: GracefulShutdown requested"
    );
    tenant.wait_for_power(&side, 0, "Off");

    // Deleted: its pods, Services and labels go (garbage collection by owner references, run
    // by kube-controller-manager).
    api.delete(CLUSTER, &DeleteParams::default()).await.unwrap();
    wait_for(&api, CLUSTER, "the SIPCluster gone", |c| c.is_none()).await;
    wait_for_pods(
        &env.client,
        (&env.namespace, ""),
        "every pod of the namespace gone",
        Duration::from_secs(90),
        |pods| pods.is_empty(),
    )
    .await;
    let services = Api::<Service>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        services.items.is_empty(),
        "no Service left: {:?}",
        services
            .items
            .iter()
            .map(|s| &s.metadata.name)
            .collect::<Vec<_>>()
    );
    let hosts = host_labels(&Api::namespaced(env.client.clone(), &env.namespace)).await;
    assert!(hosts.is_empty(), "no host keeps a sip label: {hosts:?}");
    // The whole namespace as it was: kube-controller-manager's garbage collector and the
    // endpoints controllers finish the owned objects' removal (ReplicaSets, EndpointSlices).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let after = namespace_objects(&env.client, &env.namespace).await;
        if after == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the namespace differs after the deletion: left {:?}, gone {:?}",
            after.difference(&before).collect::<Vec<_>>(),
            before.difference(&after).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_balancer_no_node_can_hold_stays_pending_and_says_why() {
    let Some(env) = node_env("node-pending").await else {
        return;
    };
    // Addresses on the bridge where nothing answers: the balancers never get a backend.
    tenant(
        &env.namespace,
        [
            "198.18.0.231",
            "198.18.0.232",
            "198.18.0.233",
            "198.18.0.234",
            "198.18.0.235:8000",
        ],
    )
    .create_hosts(&env)
    .await;
    node_keys(&env, b"placeholder".to_vec()).await;
    let cluster = tenant_cluster(&env, CLUSTER, |m| {
        m["spec"]["services"]["loadBalancerControlPlane"][0]["nodeLabels"] =
            json!({"sip.airshipit.org/test-no-such-node": "true"});
    });
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &cluster).await.unwrap();
    wait_for(&api, CLUSTER, "Ready", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.phase == Some(Phase::Ready))
    })
    .await;
    let selector = format!("{CHILDREN},app.kubernetes.io/component=load-balancer-control-plane");
    let pods = wait_for_pods(
        &env.client,
        (&env.namespace, &selector),
        "the control-plane balancer's pod unschedulable",
        Duration::from_secs(60),
        |pods| pods.iter().any(unschedulable),
    )
    .await;
    let pending: Vec<&Pod> = pods.iter().filter(|p| unschedulable(p)).collect();
    let message = pending[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("didn't match Pod's node affinity/selector"),
        "the reason names the node selector: {message}; the node: {}",
        super::node_state(&env.client).await
    );
    // Ready (sip's part is done), and ServicesAvailable says which service has no pod: once the
    // other two are available, only the control-plane balancer is named.
    let balancer = object_name(
        CLUSTER,
        ServiceId {
            kind: ServiceKind::LoadBalancerControlPlane,
            index: 0,
        },
    );
    let seen = wait_for(
        &api,
        CLUSTER,
        "ServicesAvailable naming the balancer alone",
        |c| {
            condition(c, "ServicesAvailable").is_some_and(|(status, reason, message)| {
                status == "False"
                    && reason == "Unavailable"
                    && message.ends_with(&format!("pods: {balancer}"))
            })
        },
    )
    .await;
    assert_eq!(
        condition(seen.as_ref(), "Ready")
            .map(|(s, ..)| s)
            .as_deref(),
        Some("True")
    );
    api.delete(CLUSTER, &DeleteParams::default()).await.unwrap();
    wait_for(&api, CLUSTER, "the SIPCluster gone", |c| c.is_none()).await;
}

/// A condition of a SIPCluster: (status, reason, message).
fn condition(cluster: Option<&SIPCluster>, type_: &str) -> Option<(String, String, String)> {
    let c = cluster?
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Pending, with the scheduler's reason.
fn unschedulable(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Pending")
        && status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable"))
        })
}

/// Polls `check` until it says done, failing with `what` and its last answer after `limit`.
fn until<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> (bool, T),
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let (done, seen) = check();
        if done {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last seen {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

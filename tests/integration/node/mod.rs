//! sip as its users run it: on the one-node cluster of `cargo demo --node` (a kubelet with
//! containerd and runc, kube-proxy, kube-scheduler, kube-controller-manager), from the images
//! built here, deployed by `kubectl apply -k manifests/` exactly as shipped. Everything is used
//! from the host as a user would: through Services' node ports and cluster IPs (kube-proxy),
//! never a pod's own address.
//!
//! One cluster and one operator deployment serve every test of this module (started on first
//! use, torn down when the test binary ends); each test works in namespaces and hosts of its
//! own, its hosts labeled for it so no other test's cluster can take them.

mod failover;
mod operator;
mod services;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use sip_envtest::create_namespace;
use sip_envtest::node::{NodeCluster, images};

use crate::common::TestEnv;
use crate::sandbox::tools;

/// The label that keeps a test's hosts its own; the value is the test's namespace.
pub const TENANT_LABEL: &str = "sip.airshipit.org/test-tenant";

/// The failover test deletes the leader's pod (write); the test that reads the operator's pods
/// (logs, exec, the Lease) must not run meanwhile (read).
pub static OPERATOR_PODS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The shared node cluster with the operator deployed and rolled out; `None` when the tools
/// are missing and `SIP_ALLOW_MISSING_TOOLS` says to skip.
pub fn cluster() -> Option<&'static NodeCluster> {
    tools()?;
    static SHARED: OnceLock<Result<NodeCluster, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the node cluster's start");
            rt.block_on(start()).map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the node cluster's start panicked".into()))
    });
    match started {
        Ok(cluster) => Some(cluster),
        Err(e) => panic!("cannot start the node cluster: {e}"),
    }
}

async fn start() -> anyhow::Result<NodeCluster> {
    let operator = images::operator_binary()?;
    let archives = images::build(&operator)?;
    let cluster = NodeCluster::start(&archives).await?;
    cluster.deploy_operator()?;
    Ok(cluster)
}

/// A namespace of the node cluster for one test, and an admin client.
pub async fn node_env(prefix: &str) -> Option<TestEnv> {
    let cluster = cluster()?;
    let client = cluster
        .client()
        .await
        .expect("a client of the node cluster");
    let namespace = create_namespace(&client, prefix)
        .await
        .expect("a namespace for the test");
    Some(TestEnv {
        cp: &cluster.control_plane,
        client,
        namespace,
    })
}

/// Runs kubectl on the node cluster, failing the test with its output if it fails.
pub fn kubectl_ok(cluster: &NodeCluster, args: &[&str]) -> String {
    let out = cluster.kubectl().args(args).output().expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a pod is Running with every container ready (its readiness probes passed).
pub fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c.ready))
}

/// Waits until `check` holds for the pods of `namespace` matching `selector`; returns them.
pub async fn wait_for_pods(
    client: &kube::Client,
    (namespace, selector): (&str, &str),
    what: &str,
    limit: Duration,
    check: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + limit;
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list pods")
            .items;
        if check(&list) {
            return list;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what} not within {limit:?}; the node: {}; the pods: {:#?}",
                node_state(client).await,
                list.iter()
                    .map(|p| (p.metadata.name.clone(), p.status.clone()))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's taints and its conditions that are not as a healthy node's: why the scheduler
/// may refuse it (disk or memory pressure, a NotReady spell under load).
pub async fn node_state(client: &kube::Client) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|n| {
                let taints: Vec<String> = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect();
                let conditions: Vec<String> = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|c| (c.type_ == "Ready") != (c.status == "True"))
                    .map(|c| {
                        let message = c.message.as_deref().unwrap_or_default();
                        format!("{}={} ({message})", c.type_, c.status)
                    })
                    .collect();
                format!(
                    "{} taints {taints:?}, unhealthy conditions {conditions:?}",
                    n.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("(cannot list nodes: {e})"),
    }
}

/// `curl` from the host, its output and whether it succeeded.
pub fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every object in `namespace`, of every namespaced kind the API server lists, as
/// `group/Kind/name` (Events left out: they tell the story and expire on their own). Read
/// through discovery, so an object of any kind, labeled or not, shows.
pub async fn namespace_objects(
    client: &kube::Client,
    namespace: &str,
) -> std::collections::BTreeSet<String> {
    use kube::api::DynamicObject;
    use kube::discovery::{Discovery, Scope, verbs};
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery of the node cluster's API");
    let mut objects = std::collections::BTreeSet::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || resource.kind == "Event"
            {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let list = api
                .list(&ListParams::default())
                .await
                .unwrap_or_else(|e| panic!("listing {} in {namespace}: {e}", resource.kind));
            for o in list.items {
                objects.insert(format!(
                    "{}/{}/{}",
                    resource.group,
                    resource.kind,
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    objects
}

//! What every integration test needs: a client on the shared control plane and a namespace.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sip::api::{BareMetalHost, LABEL_CLUSTER_NAME, Phase, SIPCluster};
use sip_envtest::{ControlPlane, apply_yaml, create_namespace};

pub const SAMPLE_SIPCLUSTER: &str = include_str!("../../manifests/samples/sipcluster.yaml");
pub const SAMPLE_HOSTS: &str = include_str!("../../manifests/samples/hosts.yaml");

#[derive(Clone)]
pub struct TestEnv {
    pub cp: &'static ControlPlane,
    pub client: kube::Client,
    pub namespace: String,
}

pub async fn test_env(prefix: &str) -> TestEnv {
    init_logging();
    let cp = ControlPlane::shared();
    let client = cp
        .client()
        .await
        .expect("client for the local control plane");
    let namespace = create_namespace(&client, prefix)
        .await
        .expect("create test namespace");
    TestEnv {
        cp,
        client,
        namespace,
    }
}

/// Every log line the operator wrote in this test process, at debug level and above, for
/// tests that check no secret ever reaches a log.
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&CAPTURED.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt};
    // The operator's warnings, shown with a failing test's output.
    let shown = std::env::var("SIP_TEST_LOG").unwrap_or_else(|_| "warn,sip=info".into());
    let _ = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::new(shown)),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(|| Capture)
                .with_filter(EnvFilter::new("info,sip=trace,kube=debug")),
        )
        .try_init();
}

/// The documents of a multi-document YAML text, as JSON.
pub fn yaml_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The first document of `kind` in `yaml`.
pub fn document_of_kind(yaml: &str, kind: &str) -> Value {
    yaml_documents(yaml)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the sample"))
}

impl TestEnv {
    /// Runs kubectl against the control plane and returns stdout, failing the test on error.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.cp.kubectl().args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The sample inventory, moved into the test's namespace, with the Secret the sample
/// SIPCluster's jump host needs.
pub async fn load_hosts(env: &TestEnv) {
    load_hosts_into(&env.client, &env.namespace).await;
}

/// [`load_hosts`] for any client and namespace (a test with a control plane of its own).
pub async fn load_hosts_into(client: &kube::Client, namespace: &str) {
    let docs: Vec<String> = yaml_documents(SAMPLE_HOSTS)
        .into_iter()
        .chain(std::iter::once(document_of_kind(
            SAMPLE_SIPCLUSTER,
            "Secret",
        )))
        .filter(|d| d["kind"] != "Namespace")
        .map(|mut d| {
            d["metadata"]["namespace"] = json!(namespace);
            if d["kind"] == "BareMetalHost" {
                d["spec"]["networkData"]["namespace"] = json!(namespace);
            }
            serde_json::to_string(&d).unwrap()
        })
        .collect();
    apply_yaml(client, &docs.join("\n---\n"), namespace)
        .await
        .unwrap();
}

pub fn start_operator(env: &TestEnv) -> tokio::task::JoinHandle<()> {
    start_metered_operator(env).0
}

/// The operator, and the metrics it records (to see that it reconciled).
pub fn start_metered_operator(env: &TestEnv) -> Running {
    let metrics = std::sync::Arc::new(sip::metrics::Metrics::new());
    let settings = operator_settings(&env.namespace, "test", &metrics);
    let operator = tokio::spawn(sip::controller::run(
        env.client.clone(),
        settings,
        std::future::pending(),
    ));
    (operator, metrics)
}

/// The admin kubeconfig of `cp` as a client config, with a fresh metrics registry and the
/// layer that counts API requests into it, as `sip run` builds them.
pub async fn metered_config(
    cp: &ControlPlane,
) -> (
    kube::Config,
    std::sync::Arc<sip::metrics::Metrics>,
    sip::metrics::ApiMetricsLayer,
) {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(sip::metrics::Metrics::new());
    let layer = sip::metrics::ApiMetricsLayer::new(metrics.clone());
    (config, metrics, layer)
}

/// An operator task of a test's, and the metrics it records.
pub type Running = (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<sip::metrics::Metrics>,
);

/// The operator as `sip run` builds it (the HTTP/2 client, one connection, metered) on `cp`,
/// serving `namespace` as `instance`, with `edit` applied to its settings (failpoints,
/// scopes); and the metrics it records.
pub async fn start_operator_on_with(
    cp: &ControlPlane,
    namespace: &str,
    instance: &str,
    edit: impl FnOnce(&mut sip::controller::Settings),
) -> Running {
    let (config, metrics, layer) = metered_config(cp).await;
    let client = sip::client::build(config, layer).unwrap();
    let mut settings = operator_settings(namespace, instance, &metrics);
    edit(&mut settings);
    let operator = tokio::spawn(sip::controller::run(
        client,
        settings,
        std::future::pending(),
    ));
    (operator, metrics)
}

/// [`start_operator_on_with`], its settings as they are: a control plane of a test's own.
pub async fn start_operator_on(cp: &ControlPlane, namespace: &str, instance: &str) -> Running {
    start_operator_on_with(cp, namespace, instance, |_| {}).await
}

/// [`start_operator_on_with`] on the shared control plane, serving the test's namespace.
pub async fn start_operator_with(
    env: &TestEnv,
    instance: &str,
    edit: impl FnOnce(&mut sip::controller::Settings),
) -> Running {
    start_operator_on_with(env.cp, &env.namespace, instance, edit).await
}

/// The operator's settings in a test: hosts and SIPClusters of `namespace` only, reporting as
/// `instance`, recording into `metrics`.
pub fn operator_settings(
    namespace: &str,
    instance: &str,
    metrics: &std::sync::Arc<sip::metrics::Metrics>,
) -> sip::controller::Settings {
    sip::controller::Settings {
        host_namespace: Some(namespace.into()),
        cluster_namespace: Some(namespace.into()),
        instance: Some(instance.into()),
        metrics: metrics.clone(),
        ..Default::default()
    }
}

/// The sum of a metric's series whose labels contain every one of `labels` (`name="value"`),
/// from the operator's own exposition.
pub fn metric_sum(metrics: &sip::metrics::Metrics, name: &str, labels: &[&str]) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reconciles the operator has finished, whatever their result.
pub fn reconciles(metrics: &sip::metrics::Metrics) -> f64 {
    metric_sum(metrics, "controller_runtime_reconcile_total", &[])
}

/// Pokes the SIPCluster and waits until the operator has reconciled since: a test that then
/// finds nothing written knows the operator looked.
pub async fn poke_and_wait(
    api: &Api<SIPCluster>,
    name: &str,
    value: &str,
    metrics: &sip::metrics::Metrics,
) {
    // Quiet first (a Ready cluster's own last status write starts one more turn), so the
    // reconcile counted next is the poke's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = reconciles(metrics);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciles(metrics);
        if now == before || Instant::now() > deadline {
            break;
        }
        before = now;
    }
    poke(api, name, value).await;
    while reconciles(metrics) <= before {
        assert!(
            Instant::now() < deadline,
            "the operator did not reconcile {name} after the poke"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for the SIPCluster, failing with what was last seen.
pub async fn wait_for(
    api: &Api<SIPCluster>,
    name: &str,
    what: &str,
    check: impl Fn(Option<&SIPCluster>) -> bool,
) -> Option<SIPCluster> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = api.get_opt(name).await.unwrap();
        if check(seen.as_ref()) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen status: {:#?}",
            seen.and_then(|c| c.status)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An event for the SIPCluster without a spec change (an annotation), so it is reconciled.
pub async fn poke(api: &Api<SIPCluster>, name: &str, value: &str) {
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&json!({"metadata": {"annotations": {"poke": value}}})),
    )
    .await
    .unwrap();
}

/// The messages of the cluster's history entries with `reason`, oldest first.
pub fn history_of(cluster: &SIPCluster, reason: &str) -> Vec<String> {
    cluster
        .status
        .iter()
        .flat_map(|s| &s.history)
        .filter(|h| h.reason == reason)
        .map(|h| h.message.clone())
        .collect()
}

/// Waits until `name` is Ready and its history holds a `reason` entry whose message `says`
/// what is expected: a turn that repairs or re-renders writes its story with the status write
/// that ends it, after the objects are in place, so seeing the objects is not yet seeing it.
pub async fn told(
    api: &Api<SIPCluster>,
    name: &str,
    reason: &str,
    says: impl Fn(&str) -> bool,
) -> SIPCluster {
    let what = format!("Ready, with a {reason} entry in the history");
    wait_for(api, name, &what, |c| {
        phase(c) == Some(Phase::Ready)
            && c.is_some_and(|c| history_of(c, reason).iter().any(|m| says(m)))
    })
    .await
    .expect("wait_for returns the object it checked")
}

/// The Events about the object `name` in `namespace`, as `kubectl describe` lists them.
pub async fn events_about(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    Api::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
}

pub fn phase(c: Option<&SIPCluster>) -> Option<Phase> {
    c.and_then(|c| c.status.as_ref()).and_then(|s| s.phase)
}

/// Asserts the history reads as one uninterrupted pass from creation to Ready.
pub fn assert_uninterrupted_story(status: &sip::api::SIPClusterStatus, what: &str) {
    let story: Vec<(Option<Phase>, Phase)> =
        status.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        story,
        [
            (None, Phase::Gathering),
            (Some(Phase::Gathering), Phase::Extracting),
            (Some(Phase::Extracting), Phase::DeployingInfra),
            (Some(Phase::DeployingInfra), Phase::Labeling),
            (Some(Phase::Labeling), Phase::Ready),
        ],
        "{what}: the story must read as one uninterrupted pass"
    );
    assert_eq!(
        sip::controller::history::replay(status),
        Ok(status.phase),
        "{what}: the phase is the replay of the log's events through the machine"
    );
    let events: Vec<_> = status.history.iter().map(|h| h.event).collect();
    use sip::machine::Event::{Created, Done};
    assert_eq!(
        events,
        [
            Some(Created),
            Some(Done),
            Some(Done),
            Some(Done),
            Some(Done)
        ],
        "{what}: each entry records the machine's input"
    );
}

/// Host name -> the SIPCluster its `cluster-name` label names, for every labeled host.
pub async fn labeled_hosts(env: &TestEnv) -> BTreeMap<String, String> {
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    host_labels(&hosts)
        .await
        .into_iter()
        .map(|(host, (cluster, _))| (host, cluster))
        .collect()
}

/// Host name -> (cluster-name, node-type) for every host labeled for a cluster.
pub async fn host_labels(hosts: &Api<BareMetalHost>) -> BTreeMap<String, (String, String)> {
    hosts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|h| {
            let labels = h.metadata.labels?;
            let cluster = labels.get(LABEL_CLUSTER_NAME)?.clone();
            let role = labels
                .get(sip::api::LABEL_NODE_TYPE)
                .cloned()
                .unwrap_or_default();
            Some((h.metadata.name?, (cluster, role)))
        })
        .collect()
}

/// The sample SIPCluster as JSON, named `name` in the test's namespace, its node
/// ports as written: for tests where no operator serves it (nothing allocates the ports).
pub fn unserved_sample(env: &TestEnv, name: &str) -> Value {
    let mut m = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    m["metadata"]["namespace"] = json!(env.namespace);
    m["metadata"]["name"] = json!(name);
    m
}

/// Two node ports no other sample in this test process uses, in the band the API server never
/// picks from itself (the local control plane's range is 30000-34095; the band is the lowest
/// 128), so they cannot collide with ports it chose for other Services.
fn node_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        block < 64,
        "the static node-port band is used up: give fewer samples a worker balancer"
    );
    30000 + block * 2
}

/// The sample SIPCluster, named `name` in the test's namespace, after `edit`
/// changed its JSON. Node ports are cluster-wide: the jump host and the control-plane
/// balancer get theirs from the API server, and a worker balancer left by `edit` (its range
/// must be named) gets a block of its own.
pub fn sample_cluster(env: &TestEnv, name: &str, edit: impl FnOnce(&mut Value)) -> SIPCluster {
    let mut m = unserved_sample(env, name);
    let services = &mut m["spec"]["services"];
    for service in ["jumpHost", "loadBalancerControlPlane"] {
        services[service][0]
            .as_object_mut()
            .expect("the sample has the service")
            .remove("nodePort");
    }
    services["loadBalancerWorker"][0]["nodePortRange"] = json!(null);
    edit(&mut m);
    if let Some(range) = m.pointer_mut("/spec/services/loadBalancerWorker/0/nodePortRange")
        && range.is_null()
    {
        let base = node_ports();
        *range = json!({"start": base, "end": base + 1});
    }
    serde_json::from_value(m).expect("the edited sample is a SIPCluster")
}

/// `Kind/name` -> resourceVersion of every object the operator deployed for `cluster` (the
/// kinds it may be granted to list; Secrets are found by the instances' names).
pub async fn children_of(env: &TestEnv, cluster: &str) -> BTreeMap<String, String> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
    use kube::{Resource, ResourceExt};
    let params = ListParams::default().labels(&sip::services::meta::children_selector(cluster));
    let mut out = BTreeMap::new();
    macro_rules! collect {
        ($($k:ty),*) => {$(
            let api: Api<$k> = Api::namespaced(env.client.clone(), &env.namespace);
            for o in api.list_metadata(&params).await.unwrap() {
                out.insert(
                    format!("{}/{}", <$k as Resource>::kind(&()), o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        )*};
    }
    collect!(ServiceAccount, ConfigMap, Secret, Service, Deployment);
    out
}

/// A fifth rack's control-plane host (the sample pool has four racks), reusing cp-1's Secrets.
pub fn fifth_rack_host(namespace: &str) -> String {
    json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": "cp-5", "namespace": namespace, "labels": {
            "vino.airshipit.org/flavor": "control-plane", "vino.airshipit.org/rack": "rack-5",
            "vino.airshipit.org/host": "cp-server-5"}},
        "spec": {"online": true, "bmc": {"address": "ipmi://10.23.0.15", "credentialsName": "cp-1-bmc-secret"},
                 "networkData": {"name": "cp-1-network-data", "namespace": namespace}}
    })
    .to_string()
}

/// The ways `secret` could appear in text: as is, base64 (standard and URL-safe) at each of
/// the three byte alignments it could have inside a longer encoded value, hex, and as the
/// byte lists `{:?}` and JSON print. Each with the name of its encoding.
pub fn encodings(secret: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let bytes = secret.as_bytes();
    let mut out = vec![("plain", secret.to_string())];
    for (name, engine) in [("base64", &STANDARD), ("base64url", &URL_SAFE)] {
        for offset in 0..3 {
            // Encoded after `offset` other bytes: the characters that depend on the secret's
            // bytes alone are the ones between the first and the last partial group.
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let start = [0, 2, 3][offset];
            let end = (padded.len() / 3) * 4;
            if end > start + 8 {
                out.push((name, encoded[start..end].to_string()));
            }
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex", hex.clone()));
    out.push(("HEX", hex.to_uppercase()));
    let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    out.push(("{:?} bytes", list.join(", ")));
    out.push(("JSON bytes", list.join(",")));
    out
}

/// Asserts none of `secrets` appears, in any of [`encodings`], in any of `places`
/// (`(where, text)`).
pub fn assert_no_secret_in(places: &[(&str, String)], secrets: &[&str]) {
    for secret in secrets {
        for (encoding, needle) in encodings(secret) {
            for (place, text) in places {
                assert!(
                    !text.contains(&needle),
                    "{secret} leaked into {place}, {encoding}-encoded ({needle})"
                );
            }
        }
    }
}

#[test]
fn every_encoding_of_a_secret_is_found_where_it_hides() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let secret = "sample-password-cp-1";
    for prefix in ["", "a", "ab", "abc"] {
        let hidden = STANDARD.encode(format!("{prefix}user:{secret}:tail"));
        assert!(
            encodings(secret)
                .iter()
                .any(|(_, needle)| hidden.contains(needle.as_str())),
            "base64 after {prefix:?}: {hidden}"
        );
    }
    let debug = format!("{:?}", format!("x{secret}y").as_bytes());
    assert!(
        encodings(secret)
            .iter()
            .any(|(_, n)| debug.contains(n.as_str()))
    );
    let json = serde_json::to_string(&format!("{secret}!").as_bytes()).unwrap();
    assert!(
        encodings(secret)
            .iter()
            .any(|(_, n)| json.contains(n.as_str()))
    );
    assert!(
        !encodings(secret)
            .iter()
            .any(|(_, n)| "nothing to see".contains(n.as_str()))
    );
}

/// A token for the ServiceAccount `name` in `namespace`, as a pod would have.
pub async fn token_of(env: &TestEnv, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::PostParams;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(env.client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
}

/// Another replica writes the Lease `sip-operator` of the test's namespace as its own, for a
/// minute (a clock-skewed standby, a manual takeover).
pub async fn take_lease(env: &TestEnv, holder: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    // MicroTime: exactly six fractional digits.
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
        .patch(
            "sip-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": holder, "renewTime": now, "acquireTime": now,
                "leaseDurationSeconds": 60,
            }})),
        )
        .await
        .unwrap();
}

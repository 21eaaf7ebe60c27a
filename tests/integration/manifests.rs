//! The shipped manifests against the real API server: every one passes a server-side dry run,
//! and the operator does its whole job with only the rights `manifests/base/rbac.yaml` gives
//! its ServiceAccount; with one right missing it says so instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use sip::api::{Phase, SIPCluster};
use sip::metrics::Metrics;

use crate::common::{
    TestEnv, labeled_hosts, load_hosts, metric_sum, operator_settings, phase, sample_cluster,
    take_lease, test_env, token_of, wait_for, yaml_documents,
};

const RBAC: &str = include_str!("../../manifests/base/rbac.yaml");
const NAMESPACE: &str = "sip-system";

async fn ensure_namespace(env: &TestEnv, name: &str) {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

#[tokio::test]
async fn every_manifest_passes_a_server_side_dry_run() {
    let env = test_env("manifests").await;
    // A dry run creates nothing, so objects inside a namespace the same run would create fail;
    // the namespaces exist for real first.
    for ns in [NAMESPACE, "metal3", "sipcluster-system"] {
        ensure_namespace(&env, ns).await;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        &format!("{root}/manifests"),
    ]);
    for object in [
        "namespace/sip-system",
        "customresourcedefinition.apiextensions.k8s.io/sipclusters.airship.airshipit.org",
        "serviceaccount/sip-operator",
        "clusterrole.rbac.authorization.k8s.io/sip-operator",
        "clusterrole.rbac.authorization.k8s.io/sip-metrics-reader",
        "clusterrole.rbac.authorization.k8s.io/sip-viewer",
        "clusterrolebinding.rbac.authorization.k8s.io/sip-operator",
        "role.rbac.authorization.k8s.io/sip-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/sip-operator-leader-election",
        "networkpolicy.networking.k8s.io/sip-operator",
        "service/sip-operator-metrics",
        "deployment.apps/sip-operator",
        "poddisruptionbudget.policy/sip-operator",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    let samples = env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        &format!("{root}/manifests/samples"),
    ]);
    assert!(
        samples.contains("baremetalhost.metal3.io/cp-1"),
        "{samples}"
    );
    assert!(
        samples.contains("sipcluster.airship.airshipit.org/sipcluster-system"),
        "{samples}"
    );
    // The monitoring objects need prometheus-operator's CRDs; kustomize must still build them.
    let monitoring = env.kubectl(&["kustomize", &format!("{root}/manifests/monitoring")]);
    for needle in [
        "kind: PrometheusRule",
        "kind: ServiceMonitor",
        "grafana_dashboard: \"1\"",
        "sip-dashboard.json",
    ] {
        assert!(
            monitoring.contains(needle),
            "{needle} missing from the monitoring build"
        );
    }
}

/// metal3 not installed yet (its CRD missing): `/readyz` and the log name the CRD, and the
/// operator does not work, rather than waiting in silence.
#[tokio::test]
async fn without_the_baremetalhost_crd_readyz_and_the_log_say_which() {
    crate::common::init_logging();
    // A control plane of its own: the CRD is deleted.
    let cp = sip_envtest::ControlPlane::start()
        .await
        .expect("a control plane");
    let admin = cp.client().await.unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(admin.clone());
    crds.delete("baremetalhosts.metal3.io", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crds
        .get_opt("baremetalhosts.metal3.io")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the CRD was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let namespace = sip_envtest::create_namespace(&admin, "no-crd")
        .await
        .unwrap();
    let (operator, metrics) = crate::common::start_operator_on(&cp, &namespace, "no-crd").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let trouble = loop {
        let trouble = metrics.watches.trouble().join("; ");
        if trouble.contains("baremetalhosts") {
            break trouble;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no watch failure recorded: {trouble:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        trouble.contains("baremetalhosts.metal3.io not found: is its CRD installed?"),
        "/readyz names the CRD: {trouble}"
    );
    assert!(
        !metrics.is_working(),
        "it cannot work without its host cache"
    );
    assert!(
        crate::common::captured_logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("baremetalhosts.metal3.io not found")),
        "the log says which, at warn"
    );
    operator.abort();
}

/// Applies the RBAC of `manifests/base/rbac.yaml`, renamed with `suffix` and changed by `edit`,
/// and returns a client holding only that ServiceAccount's token.
async fn client_with_rbac(env: &TestEnv, suffix: &str, edit: impl Fn(&mut Value)) -> kube::Client {
    ensure_namespace(env, NAMESPACE).await;
    let name = format!("sip-operator{suffix}");
    let docs: Vec<String> = yaml_documents(RBAC)
        .into_iter()
        .map(|mut d| {
            d["metadata"]["name"] = json!(name);
            if d["kind"] == "ServiceAccount" {
                d["metadata"]["namespace"] = json!(NAMESPACE);
            }
            if d["kind"] == "ClusterRoleBinding" {
                d["roleRef"]["name"] = json!(name);
                d["subjects"][0]["name"] = json!(name);
            }
            // The leader-election Role lives in the operator's namespace, as kustomize puts it.
            if d["kind"] == "Role" || d["kind"] == "RoleBinding" {
                d["metadata"]["name"] = json!(format!("{name}-leader-election"));
                d["metadata"]["namespace"] = json!(NAMESPACE);
            }
            if d["kind"] == "RoleBinding" {
                d["roleRef"]["name"] = json!(format!("{name}-leader-election"));
                d["subjects"][0]["name"] = json!(name);
            }
            if d["kind"] == "ClusterRole" {
                edit(&mut d);
            }
            serde_json::to_string(&d).unwrap()
        })
        .collect();
    sip_envtest::apply_yaml(&env.client, &docs.join("\n---\n"), NAMESPACE)
        .await
        .unwrap();
    let token = token_of(env, NAMESPACE, &name).await;
    let kubeconfig = kube::config::Kubeconfig::read_from(&env.cp.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    kube::Client::try_from(config).unwrap()
}

/// `GET path` on the admin server with `token`: the status code and the body.
async fn scrape(address: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: sip\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// With --metrics-auth, as the shipped Deployment runs, /metrics answers only a token whose
/// user may get it (the shipped ClusterRole sip-metrics-reader), asking the API server with
/// only the operator's own rights; the probes stay open.
#[tokio::test]
async fn metrics_are_served_only_to_a_token_allowed_to_read_them() {
    let env = test_env("scrape").await;
    let operator_client = client_with_rbac(&env, "-scrape", |_| {}).await;
    // Two scrapers: one bound to the shipped reader role, one not.
    let reader = yaml_documents(include_str!("../../manifests/base/metrics-reader.yaml"))
        .into_iter()
        .next()
        .unwrap();
    let role = format!("sip-metrics-reader-{}", env.namespace);
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": env.namespace}],
    });
    let mut reader = reader;
    reader["metadata"]["name"] = json!(role);
    let accounts: Vec<String> = ["prometheus", "stranger"]
        .iter()
        .map(|n| {
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n}})
                .to_string()
        })
        .chain([reader.to_string(), binding.to_string()])
        .collect();
    sip_envtest::apply_yaml(&env.client, &accounts.join("\n---\n"), &env.namespace)
        .await
        .unwrap();
    let allowed = token_of(&env, &env.namespace, "prometheus").await;
    let denied = token_of(&env, &env.namespace, "stranger").await;

    let metrics = Arc::new(Metrics::new());
    let auth = Arc::new(sip::scrape_auth::ScrapeAuth::new(operator_client));
    let (address, server) = sip::admin::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Some(auth),
        None,
        std::future::pending(),
    )
    .await
    .unwrap();
    let server = tokio::spawn(server);
    let cases = [
        ("/metrics", None, 401, "no token"),
        (
            "/metrics",
            Some("not-a-token"),
            401,
            "a token the API server refuses",
        ),
        (
            "/metrics",
            Some(denied.as_str()),
            403,
            "a user without the right",
        ),
        ("/metrics", Some(allowed.as_str()), 200, "the reader"),
        (
            "/metrics",
            Some(allowed.as_str()),
            200,
            "the reader again (remembered)",
        ),
        ("/healthz", None, 200, "the liveness probe"),
    ];
    for (path, token, want, msg) in cases {
        let (code, body) = scrape(address, path, token).await;
        assert_eq!(code, want, "{msg}: {body}");
        if want == 200 && path == "/metrics" {
            assert!(body.contains("sip_"), "{msg}: the metrics: {body}");
        }
        if want == 403 {
            assert!(body.contains("stranger may not get /metrics"), "{body}");
        }
    }
    server.abort();
}

/// The operator as `sip run` runs it: leader election, then the controller.
fn start(
    env: &TestEnv,
    client: kube::Client,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let settings = operator_settings(&env.namespace, "rbac", &metrics);
    // In the operator's namespace, where its Role grants the Lease rights; one per test.
    let lease = sip::leader::LeaseSettings {
        name: format!("sip-operator-{}", env.namespace),
        namespace: NAMESPACE.into(),
        identity: "rbac".into(),
        duration_seconds: 15,
        fence: sip::leader::Fence::open(),
    };
    tokio::spawn(async move {
        let led = sip::leader::run_as_leader(
            client.clone(),
            lease,
            metrics,
            std::future::pending(),
            |stop| sip::controller::run(client, settings, stop),
        )
        .await;
        if let Err(e) = led {
            panic!("leader election with the ServiceAccount's rights: {e}");
        }
    })
}

#[tokio::test]
async fn the_operator_does_its_whole_job_with_only_its_service_accounts_rights() {
    let env = test_env("rbac").await;
    load_hosts(&env).await;
    // Under its own names: the dry run of the shipped manifests, running alongside, must never
    // see the shipped ServiceAccount appear between its read and its create.
    let client = client_with_rbac(&env, "-whole-job", |_| {}).await;
    // The token really is limited: no Secret can be listed with it.
    let listed = Api::<Secret>::namespaced(client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(listed, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{listed:?}"
    );
    // Nor can a Lease be read outside the operator's namespace.
    let lease = Api::<Lease>::namespaced(client.clone(), &env.namespace)
        .get_opt("sip-operator")
        .await;
    assert!(
        matches!(lease, Err(kube::Error::Api(ref s)) if s.code == 403),
        "Lease rights are the operator namespace's only: {lease:?}"
    );

    let operator = start(&env, client, Arc::new(Metrics::new()));
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "tenant", |_| {}),
    )
    .await
    .unwrap();
    let ready = wait_for(&api, "tenant", "Ready with least privilege", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await
    .unwrap();
    assert!(ready.status.unwrap().services.iter().all(|s| s.ready));
    assert_eq!(labeled_hosts(&env).await.len(), 4);
    api.delete("tenant", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "tenant", "deleted with least privilege", |c| {
        c.is_none()
    })
    .await;
    assert!(labeled_hosts(&env).await.is_empty());
    operator.abort();
}

#[tokio::test]
async fn without_one_right_the_operator_says_so_and_backs_off() {
    let env = test_env("rbac-missing").await;
    load_hosts(&env).await;
    // No `patch` on BareMetalHosts: Labeling cannot write labels.
    let client = client_with_rbac(&env, "-no-host-patch", |role| {
        for rule in role["rules"].as_array_mut().unwrap() {
            if rule["resources"][0] == "baremetalhosts" {
                rule["verbs"] = json!(["get", "list", "watch"]);
            }
        }
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let operator = start(&env, client, metrics.clone());
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "tenant", |_| {}),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let forbidden = loop {
        let found = events
            .list(&ListParams::default().fields("involvedObject.name=tenant"))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Forbidden"));
        if let Some(e) = found {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no Forbidden Event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(forbidden.type_.as_deref(), Some("Warning"));
    let note = forbidden.message.unwrap_or_default();
    assert!(
        note.contains("baremetalhosts") && note.contains("patch"),
        "names the missing right: {note}"
    );
    assert_eq!(
        phase(api.get_opt("tenant").await.unwrap().as_ref()),
        Some(Phase::Labeling)
    );
    // Backing off, not spinning: a handful of attempts in ten seconds.
    let errors = || metric_sum(&metrics, "controller_runtime_reconcile_errors_total", &[]);
    let before = errors();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = errors() - before;
    assert!(
        during <= 4.0,
        "{during} failed reconciles in 10 s: the operator is spinning"
    );
    operator.abort();
}

#[tokio::test]
async fn without_the_right_to_watch_hosts_readyz_and_the_log_say_which() {
    let env = test_env("rbac-no-watch").await;
    // No list or watch on BareMetalHosts: the host cache cannot fill.
    let client = client_with_rbac(&env, "-no-host-watch", |role| {
        for rule in role["rules"].as_array_mut().unwrap() {
            if rule["resources"][0] == "baremetalhosts" {
                rule["verbs"] = json!(["get", "patch"]);
            }
        }
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let operator = start(&env, client, metrics.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let trouble = loop {
        let trouble = metrics.watches.trouble();
        if !trouble.is_empty() {
            break trouble.join("; ");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no watch failure recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        trouble.starts_with("baremetalhosts: forbidden")
            && trouble.contains("needs list and watch on baremetalhosts.metal3.io"),
        "/readyz names the resource and the right: {trouble}"
    );
    assert!(
        !metrics.is_working(),
        "it cannot work without its host cache"
    );
    let counted = metrics.render().lines().any(|l| {
        l.starts_with(r#"sip_watch_errors_total{resource="baremetalhosts"} "#) && !l.ends_with(" 0")
    });
    assert!(counted, "the failures are counted");
    assert!(
        crate::common::captured_logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("needs list and watch on baremetalhosts")),
        "the log says which, at warn"
    );
    operator.abort();
}

#[tokio::test]
async fn a_leader_that_cannot_renew_its_lease_stops_at_its_own_deadline() {
    let env = test_env("rbac-fence").await;
    load_hosts(&env).await;
    let suffix = "-fence";
    let client = client_with_rbac(&env, suffix, |_| {}).await;
    let duration = 6;
    let lease_name = format!("sip-operator-{}", env.namespace);
    let (leader, metrics) =
        leading(&env, client, (NAMESPACE, &lease_name), "fenced", duration).await;
    // A standby with every right waits for the same Lease.
    let (standby, standby_metrics) = standing(
        &env,
        env.client.clone(),
        (NAMESPACE, &lease_name),
        "successor",
        duration,
    );

    // Its renewals start failing (the right to patch the Lease is taken away) while it runs.
    let role = format!("sip-operator{suffix}-leader-election");
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(env.client.clone(), NAMESPACE)
        .patch(
            &role,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"rules": [{
                "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"],
            }]})),
        )
        .await
        .unwrap();
    let revoked = std::time::Instant::now();
    // Its last renewal, sampled while it holds the Lease (once the standby takes over, the
    // Lease shows the standby's).
    let last_renewal = tokio::spawn({
        let (leases, name) = (
            Api::<Lease>::namespaced(env.client.clone(), NAMESPACE),
            lease_name.clone(),
        );
        let metrics = metrics.clone();
        async move {
            let mut last = None;
            while metrics.is_leader() {
                if let Some(spec) = leases.get(&name).await.unwrap().spec
                    && spec.holder_identity.as_deref() == Some("fenced")
                {
                    last = spec.renew_time.map(|t| t.0).or(last);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            last
        }
    });
    // When it stops working (its last write), sampled every 10 ms: the leader task itself
    // ends later, after trying to release the Lease.
    let stopped_working = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            while metrics.is_working() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::time::Instant::now()
        }
    });
    let ended = tokio::time::timeout(Duration::from_secs(3 * duration), leader)
        .await
        .expect("the leader kept working past its lease")
        .unwrap();
    let took = revoked.elapsed();
    let stopped = stopped_working.await.unwrap();
    // When it stopped working, on the wall clock the Lease is written with (the task itself
    // ends later, after its attempt to release the Lease).
    let stopped_at = k8s_openapi::jiff::Timestamp::now() - stopped.elapsed();
    let error = ended.expect_err("losing the lease is an error").to_string();
    eprintln!(
        "figure: stopped {took:.1?} after its renewals began to fail (lease {duration} s): {error}"
    );
    assert!(
        error.contains("not renewed"),
        "its own deadline stopped it: {error}"
    );
    // Before the Lease expires for the others: its last renewal plus the duration.
    let renewed = last_renewal
        .await
        .unwrap()
        .expect("the Lease was renewed by the fenced leader");
    let expires = renewed + std::time::Duration::from_secs(duration);
    assert!(
        stopped_at < expires,
        "stopped working at {stopped_at}, after the Lease expired at {expires}"
    );
    assert!(!metrics.is_working() && !metrics.is_leader());

    // The standby works only once the Lease has expired: the two never write in one second.
    let deadline = std::time::Instant::now() + Duration::from_secs(3 * duration);
    while !standby_metrics.is_working() {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gap = stopped.elapsed();
    eprintln!(
        "figure: the standby started working {gap:.1?} after the fenced leader stopped working"
    );
    assert!(
        gap >= Duration::from_secs(1),
        "the standby worked {gap:?} after the old leader stopped"
    );

    // Fenced, the old one writes nothing: a SIPCluster created now is the successor's alone.
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "late", |_| {}),
    )
    .await
    .unwrap();
    wait_for(&api, "late", "Ready under the successor", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    assert_eq!(
        crate::leader::reporters_by_now(&env, "late", &["successor"]).await,
        ["successor"],
        "only the successor worked"
    );
    standby.abort();
}

#[tokio::test]
async fn a_leader_whose_lease_another_replica_takes_stops_at_once() {
    let env = test_env("lease-taken").await;
    load_hosts(&env).await;
    let duration = 10;
    let namespace = env.namespace.clone();
    let (leader, metrics) = leading(
        &env,
        env.client.clone(),
        (&namespace, "sip-operator"),
        "old",
        duration,
    )
    .await;

    take_lease(&env, "intruder").await;
    let taken = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(duration), leader)
        .await
        .expect("the old leader kept working on a Lease someone else holds")
        .unwrap();
    let took = taken.elapsed();
    let error = ended.expect_err("losing the lease is an error").to_string();
    eprintln!("figure: stopped {took:.1?} after another replica took the Lease: {error}");
    assert!(error.contains("lost lease"), "{error}");
    assert!(
        took < Duration::from_secs(duration) / 2,
        "it stops within a fifth of the duration (one read of the Lease), not at expiry: {took:?}"
    );
    assert!(!metrics.is_working() && !metrics.is_leader());
}

/// `sip run`'s leader election around the controller, with `client`, holding `lease` for
/// `duration` seconds as `identity`; returns once it works, with its outcome to await.
async fn leading(
    env: &TestEnv,
    client: kube::Client,
    lease: (&str, &str),
    identity: &str,
    duration: u64,
) -> (
    tokio::task::JoinHandle<Result<(), sip::leader::LeaderError>>,
    Arc<Metrics>,
) {
    let (leader, metrics) = standing(env, client, lease, identity, duration);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !metrics.is_working() {
        assert!(
            std::time::Instant::now() < deadline,
            "never started working"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (leader, metrics)
}

/// [`leading`] without waiting: a replica that works once it holds the Lease.
fn standing(
    env: &TestEnv,
    client: kube::Client,
    lease: (&str, &str),
    identity: &str,
    duration: u64,
) -> (
    tokio::task::JoinHandle<Result<(), sip::leader::LeaderError>>,
    Arc<Metrics>,
) {
    let metrics = Arc::new(Metrics::new());
    let settings = operator_settings(&env.namespace, identity, &metrics);
    let lease = sip::leader::LeaseSettings {
        name: lease.1.into(),
        namespace: lease.0.into(),
        identity: identity.into(),
        duration_seconds: duration,
        fence: sip::leader::Fence::open(),
    };
    let leader = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            sip::leader::run_as_leader(
                client.clone(),
                lease,
                metrics,
                std::future::pending(),
                |stop| sip::controller::run(client, settings, stop),
            )
            .await
        }
    });
    (leader, metrics)
}

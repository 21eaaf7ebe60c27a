//! The support services on the real API server: applied with server-side apply and owned by
//! the SIPCluster, unchanged by a second apply, updated when members change, pruned when
//! removed from the spec, deleted with the cluster; a broken service gives a clear answer and
//! recovers without a restart; BMC passwords stay in the jump host's Secret.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};

use crate::common::{
    TestEnv, captured_logs, children_of, events_about, history_of, load_hosts, phase, poke,
    poke_and_wait, sample_cluster, start_metered_operator, start_operator, test_env, told,
    wait_for,
};

pub const DEX_CONFIG: &str = "- type: ldap\n  id: ldap\n  name: LDAP\n  config:\n    host: ldap.example:636\n    bindPW: ldap-bind-password-value\n";
pub const DEX_CLIENTS: &str = "- id: tenant-apiserver\n  name: Tenant API server\n  secret: oidc-client-secret-value\n  redirectURIs: [\"http://localhost:8000\"]\n";

pub async fn create_secret(env: &TestEnv, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The sample with an OIDC provider whose configuration is in `config_secret`.
fn cluster_with_auth(env: &TestEnv, name: &str, config_secret: &str) -> SIPCluster {
    sample_cluster(env, name, |m| {
        m["spec"]["services"]["auth"] = json!([{
            "issuer": "https://dex.tenant.example:5556",
            "configSecret": config_secret,
            "tlsSecret": "dex-tls",
            "storage": "kubernetes",
        }]);
    })
}

async fn secret_text(env: &TestEnv, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .get(name)
        .await
        .unwrap();
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

async fn pod_hash(env: &TestEnv, name: &str) -> String {
    let d = Api::<Deployment>::namespaced(env.client.clone(), &env.namespace)
        .get(name)
        .await
        .unwrap();
    d.spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()["sip.airshipit.org/config-hash"]
        .clone()
}

/// Waits for Ready at the cluster's current generation.
async fn ready_at_current_generation(api: &Api<SIPCluster>, name: &str) -> SIPCluster {
    wait_for(api, name, "Ready at the new generation", |c| {
        c.is_some_and(|c| {
            phase(Some(c)) == Some(Phase::Ready)
                && c.status.as_ref().unwrap().observed_generation == c.metadata.generation
        })
    })
    .await
    .unwrap()
}

/// The jump host taken out of the spec of `tenant`.
async fn remove_jump_host(api: &Api<SIPCluster>) {
    let patch = json!([{"op": "remove", "path": "/spec/services/jumpHost"}]);
    patch_spec(
        api,
        "tenant",
        Patch::Json(serde_json::from_value(patch).unwrap()),
    )
    .await;
}

async fn patch_spec(api: &Api<SIPCluster>, name: &str, patch: Patch<serde_json::Value>) {
    api.patch(name, &PatchParams::default(), &patch)
        .await
        .unwrap();
}

#[tokio::test]
async fn services_are_applied_owned_updated_pruned_and_deleted() {
    let env = test_env("services").await;
    load_hosts(&env).await;
    create_secret(
        &env,
        "dex-config",
        &[("connectors", DEX_CONFIG), ("staticClients", DEX_CLIENTS)],
    )
    .await;
    create_secret(&env, "dex-tls", &[("tls.crt", "CERT"), ("tls.key", "KEY")]).await;
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &cluster_with_auth(&env, "tenant", "dex-config"),
    )
    .await
    .unwrap();
    let ready = ready_at_current_generation(&api, "tenant").await;
    let status = ready.status.clone().unwrap();

    // Every service, every kind, owned by the SIPCluster.
    let first = children_of(&env, "tenant").await;
    let names: BTreeSet<&str> = first.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "ConfigMap/tenant-jump-host",
        "Deployment/tenant-jump-host",
        "Deployment/tenant-lb-control-plane",
        "Deployment/tenant-lb-worker",
        "Deployment/tenant-oidc",
        "Secret/tenant-jump-host",
        "Secret/tenant-jump-host-host-key",
        "Secret/tenant-lb-control-plane",
        "Secret/tenant-lb-worker",
        "Secret/tenant-oidc",
        "Service/tenant-jump-host",
        "Service/tenant-lb-control-plane",
        "Service/tenant-lb-worker",
        "Service/tenant-oidc",
        "ServiceAccount/tenant-oidc",
    ]
    .into();
    assert_eq!(names, want);
    let deployment = Api::<Deployment>::namespaced(env.client.clone(), &env.namespace)
        .get("tenant-lb-control-plane")
        .await
        .unwrap();
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("SIPCluster", ready.uid().unwrap().as_str(), Some(true)),
        "children are garbage-collected with the SIPCluster"
    );
    assert_eq!(status.services.len(), 4);
    assert!(
        status.services.iter().all(|s| s.ready),
        "{:?}",
        status.services
    );

    // The control-plane balancer sends 6443 to exactly the control-plane members.
    let cfg = secret_text(&env, "tenant-lb-control-plane", "haproxy.cfg").await;
    for host in status
        .hosts
        .iter()
        .filter(|h| h.role == sip::api::NodeRole::ControlPlane)
    {
        let line = format!("server {} {}:6443\n", host.name, host.addresses["oam-ipv4"]);
        assert!(cfg.contains(&line), "{line:?} missing:\n{cfg}");
    }
    assert_eq!(cfg.matches("\n  server ").count(), 2, "{cfg}");

    // A spec change that changes no service re-applies everything and writes nothing.
    patch_spec(&api, "tenant", Patch::Merge(json!({"spec": {"nodes": {"ControlPlane": {"labelSelector": {
        "matchExpressions": [{"key": "vino.airshipit.org/flavor", "operator": "In", "values": ["control-plane"]}]
    }}}}}))).await;
    let again = ready_at_current_generation(&api, "tenant").await;
    assert!(
        again
            .status
            .unwrap()
            .history
            .iter()
            .any(|h| h.reason == "SpecChanged"),
        "the cluster went through the phases again"
    );
    assert_eq!(
        children_of(&env, "tenant").await,
        first,
        "a second apply changes no resourceVersion"
    );

    // More workers: the worker balancer gains backends and its pods roll.
    let hash_before = pod_hash(&env, "tenant-lb-worker").await;
    patch_spec(
        &api,
        "tenant",
        Patch::Merge(
            json!({"spec": {"nodes": {"Worker": {"count": {"active": 2, "standby": 1}}}}}),
        ),
    )
    .await;
    let grown = ready_at_current_generation(&api, "tenant").await;
    let workers: Vec<_> = grown
        .status
        .unwrap()
        .hosts
        .into_iter()
        .filter(|h| h.role == sip::api::NodeRole::Worker)
        .collect();
    assert_eq!(workers.len(), 3);
    let cfg = secret_text(&env, "tenant-lb-worker", "haproxy.cfg").await;
    for w in &workers {
        assert!(
            cfg.contains(&format!("server {} {}:", w.name, w.addresses["oam-ipv4"])),
            "{}:\n{cfg}",
            w.name
        );
    }
    assert_ne!(
        pod_hash(&env, "tenant-lb-worker").await,
        hash_before,
        "pods roll on a config change"
    );

    // A service removed from the spec loses its objects; the others stay.
    remove_jump_host(&api).await;
    ready_at_current_generation(&api, "tenant").await;
    let pruned = children_of(&env, "tenant").await;
    assert!(
        !pruned
            .keys()
            .any(|k| k.ends_with("/tenant-jump-host") || k.ends_with("/tenant-jump-host-host-key")),
        "{pruned:?}"
    );
    assert_eq!(pruned.len(), want.len() - 5, "{pruned:?}");

    // Deletion removes every child, then the finalizer.
    api.delete("tenant", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "tenant", "the SIPCluster to be gone", |c| c.is_none()).await;
    assert_eq!(
        children_of(&env, "tenant").await,
        BTreeMap::new(),
        "children left behind"
    );
    operator.abort();
}

#[tokio::test]
async fn a_broken_service_gives_a_clear_answer_recovers_and_keeps_secrets() {
    let env = test_env("services-broken").await;
    load_hosts(&env).await;
    create_secret(&env, "dex-tls", &[("tls.crt", "CERT"), ("tls.key", "KEY")]).await;
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &cluster_with_auth(&env, "broken", "dex-missing"),
    )
    .await
    .unwrap();

    let needle = format!(
        "auth[0]: Secret {}/dex-missing (auth configSecret) does not exist",
        env.namespace
    );
    let blocked = wait_for(&api, "broken", "InfraServiceFailure", |c| {
        c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.reason == "InfraServiceFailure" && c.message.contains(&needle))
        })
    })
    .await
    .unwrap();
    let status = blocked.status.unwrap();
    assert_eq!(status.phase, Some(Phase::DeployingInfra));
    let auth = status
        .services
        .iter()
        .find(|s| s.service == "auth")
        .unwrap();
    assert!(!auth.ready && auth.message.as_deref().unwrap().contains("dex-missing"));
    assert!(
        status
            .services
            .iter()
            .filter(|s| s.service != "auth")
            .all(|s| s.ready),
        "the other services are applied: {:#?}",
        status.services
    );
    // The Event follows the status write that holds the block.
    eventually("a Warning Event that names the missing Secret", || async {
        events_about(&env.client, &env.namespace, "broken")
            .await
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.message.unwrap_or_default().contains(&needle)
            })
    })
    .await;

    // Fixing the Secret is enough: no restart, no spec change.
    create_secret(
        &env,
        "dex-missing",
        &[("connectors", DEX_CONFIG), ("staticClients", DEX_CLIENTS)],
    )
    .await;
    let ready = ready_at_current_generation(&api, "broken").await;

    // The BMC passwords (`sample-password-<host>`) are in the jump host's Secret and nowhere
    // else: not in a ConfigMap, the status, an Event or a log line.
    let hosts_json = secret_text(&env, "broken-jump-host", "hosts.json").await;
    assert!(
        hosts_json.contains("sample-password-"),
        "the jump host lists BMC credentials"
    );
    let config_maps = Api::<ConfigMap>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut places = vec![
        (
            "ConfigMaps",
            serde_json::to_string(&config_maps.items).unwrap(),
        ),
        ("status", serde_json::to_string(&ready.status).unwrap()),
        (
            "Events",
            serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items)
                .unwrap(),
        ),
        ("logs", captured_logs()),
    ];
    places.push((
        "kubectl describe",
        env.kubectl(&["describe", "sip", "broken", "-n", &env.namespace]),
    ));
    let logs = captured_logs();
    assert!(
        logs.contains(&env.namespace),
        "the log capture sees this test's reconciles"
    );
    crate::common::assert_no_secret_in(
        &places,
        &[
            "sample-password-",
            "oidc-client-secret-value",
            "ldap-bind-password-value",
        ],
    );
    operator.abort();
}

/// Polls `check` until it holds (60 s at most).
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A namespace with the sample hosts, the operator, and the sample SIPCluster `tenant` Ready.
async fn sample_tenant_ready(
    prefix: &str,
) -> (
    TestEnv,
    tokio::task::JoinHandle<()>,
    Api<SIPCluster>,
    SIPCluster,
    std::sync::Arc<sip::metrics::Metrics>,
) {
    let env = test_env(prefix).await;
    load_hosts(&env).await;
    let (operator, metrics) = start_metered_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "tenant", |_| {}),
    )
    .await
    .unwrap();
    let ready = ready_at_current_generation(&api, "tenant").await;
    (env, operator, api, ready, metrics)
}

#[tokio::test]
async fn objects_changed_or_deleted_by_others_are_repaired_and_then_left_alone() {
    use k8s_openapi::api::core::v1::Service;
    let (env, operator, api, _, metrics) = sample_tenant_ready("drift").await;
    let ns = &env.namespace;
    let services: Api<Service> = Api::namespaced(env.client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let replicas = |d: &Deployment| d.spec.as_ref().unwrap().replicas;
    let want_replicas = replicas(&deployments.get("tenant-lb-worker").await.unwrap());
    let want_keys = config_maps.get("tenant-jump-host").await.unwrap().data;
    let want_ports = services.get("tenant-lb-control-plane").await.unwrap().spec;

    // Three other writers at once: a deleted Service, a scaled Deployment, an edited ConfigMap.
    services
        .delete("tenant-lb-control-plane", &DeleteParams::default())
        .await
        .unwrap();
    deployments
        .patch(
            "tenant-lb-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    config_maps
        .patch(
            "tenant-jump-host",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"authorized_keys": "ssh-ed25519 AAAA intruder"}})),
        )
        .await
        .unwrap();
    eventually("the Service recreated", || async {
        services
            .get_opt("tenant-lb-control-plane")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    eventually("the Deployment scaled back", || async {
        replicas(&deployments.get("tenant-lb-worker").await.unwrap()) == want_replicas
    })
    .await;
    eventually("the ConfigMap restored", || async {
        config_maps.get("tenant-jump-host").await.unwrap().data == want_keys
    })
    .await;
    let recreated = services
        .get("tenant-lb-control-plane")
        .await
        .unwrap()
        .spec
        .unwrap();
    let want_ports = want_ports.unwrap();
    assert_eq!(
        recreated.ports.unwrap()[0].port,
        want_ports.ports.unwrap()[0].port
    );
    let told = told(&api, "tenant", "ServiceDrift", |m| {
        m.contains("tenant-lb-control-plane deleted")
    })
    .await;
    let story = history_of(&told, "ServiceDrift");
    assert!(
        story
            .iter()
            .all(|m| m.ends_with("applying the services again")),
        "{story:?}"
    );
    ready_at_current_generation(&api, "tenant").await;
    eventually("a ServiceDrift Event for kubectl describe", || async {
        events_about(&env.client, ns, "tenant")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("ServiceDrift"))
    })
    .await;

    // Secrets are not watched: the Ready check reads them. A poke (any event) runs it.
    let deleted = secrets.get("tenant-lb-worker").await.unwrap().data;
    secrets
        .delete("tenant-lb-worker", &DeleteParams::default())
        .await
        .unwrap();
    poke(&api, "tenant", "1").await;
    eventually("the Secret recreated", || async {
        secrets
            .get_opt("tenant-lb-worker")
            .await
            .unwrap()
            .is_some_and(|s| s.data == deleted)
    })
    .await;
    ready_at_current_generation(&api, "tenant").await;

    // Repaired, it stays put: the operator's own writes are not drift. The poke is reconciled
    // (counted) and writes nothing.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let settled = (
        children_of(&env, "tenant").await,
        api.get("tenant").await.unwrap().status,
    );
    poke_and_wait(&api, "tenant", "2", &metrics).await;
    let later = (
        children_of(&env, "tenant").await,
        api.get("tenant").await.unwrap().status,
    );
    assert_eq!(settled, later, "nothing written once repaired");
    operator.abort();
}

#[tokio::test]
async fn a_changed_secret_the_services_are_rendered_from_is_rendered_again() {
    let (env, operator, api, ready, _) = sample_tenant_ready("rotation").await;
    let recorded = ready.status.unwrap().sources_version;
    assert!(
        recorded.is_some(),
        "the status records what it rendered from"
    );
    // The jump host's ssh config is in its Secret (beside the BMC credentials).
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let jump_host_config = || async {
        secrets
            .get("tenant-jump-host")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("ssh_config")
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    assert!(!jump_host_config().await.contains("node-key-2"));

    // A second node key added to the Secret the jump host mounts: its ssh config names each
    // key, so it must be rendered again. Secrets are not watched: any event (here a poke) or
    // the periodic check finds it.
    secrets
        .patch(
            "ssh-private-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"node-key-2": "second key"}})),
        )
        .await
        .unwrap();
    poke(&api, "tenant", "rotated").await;
    eventually("the jump host's ssh config to name the new key", || async {
        jump_host_config().await.contains("node-key-2")
    })
    .await;
    let ready_again = told(&api, "tenant", "ServiceDrift", |m| {
        m.contains("rendered from changed")
    })
    .await;
    let status = ready_again.status.clone().unwrap();
    assert_ne!(status.sources_version, recorded);
    // The sum is of versions only: nothing of the Secret's content reaches the status.
    let status_json = serde_json::to_string(&status).unwrap();
    assert!(!status_json.contains("second key"));
    operator.abort();
}

#[tokio::test]
async fn a_template_config_map_takes_effect_without_a_poke() {
    let (env, operator, _, _, _) = sample_tenant_ready("template").await;
    let config = || secret_text(&env, "tenant-lb-control-plane", "haproxy.cfg");
    assert!(!config().await.contains("# from the tenant's template"));

    // The template ConfigMaps are watched: creating one, then editing it, renders the load
    // balancer again with nothing else happening (the periodic full check is minutes away).
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let template = |marker: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "loadbalancercontrolplane"},
        "data": {"loadBalancerControlPlane.cfg": format!(
            "# from the tenant's template, {marker}\n{{% for s in servers %}}server {{{{ s.name }}}}\n{{% endfor %}}"
        )}})
    };
    let apply = PatchParams::apply("template-test");
    for (marker, what) in [
        ("first", "the new template"),
        ("second", "the edited template"),
    ] {
        config_maps
            .patch(
                "loadbalancercontrolplane",
                &apply,
                &Patch::Apply(template(marker)),
            )
            .await
            .unwrap();
        let rendered = format!("# from the tenant's template, {marker}");
        eventually(&format!("the load balancer to render {what}"), || async {
            config().await.contains(&rendered)
        })
        .await;
    }
    let cfg = config().await;
    assert!(
        cfg.contains("server cp-"),
        "the members are its servers: {cfg}"
    );

    // Deleted, the built-in template serves again.
    config_maps
        .delete("loadbalancercontrolplane", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the built-in template to serve again", || async {
        let cfg = config().await;
        !cfg.contains("# from the tenant's template") && cfg.contains("bind *:6443")
    })
    .await;
    operator.abort();
}

#[tokio::test]
async fn pruning_deletes_only_what_the_cluster_owns() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let (env, operator, api, _, _) = sample_tenant_ready("prune-owned").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    // Someone else's ServiceAccount that happens to bear the jump host's name.
    let foreign = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("tenant-jump-host".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    remove_jump_host(&api).await;
    ready_at_current_generation(&api, "tenant").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(
        deployments
            .get_opt("tenant-jump-host")
            .await
            .unwrap()
            .is_none(),
        "the jump host's own objects are pruned"
    );
    assert!(
        accounts
            .get_opt("tenant-jump-host")
            .await
            .unwrap()
            .is_some(),
        "an object of the same name the cluster does not own is left alone"
    );
    operator.abort();
}

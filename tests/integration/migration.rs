//! Taking over from the Go predecessor (airshipit/sip): the state it leaves is rebuilt on a
//! real API server from its samples and its code's names and labels (hosts labeled and no
//! ledger, its finalizer, a status of conditions only, its template ConfigMaps in Go syntax,
//! its objects without owner references, its Services holding the node ports); then sip
//! starts. The tenant must not move: the same hosts stay labeled, no other host is taken, and
//! sip's services end up on the same node ports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event as KubeEvent, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sip::api::{
    BareMetalHost, FINALIZER, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, LABEL_NODE_TYPE, Phase,
    SIPCluster,
};
use sip_envtest::{ControlPlane, apply_yaml, create_namespace};

use crate::common::{
    SAMPLE_SIPCLUSTER, assert_uninterrupted_story, document_of_kind, host_labels, load_hosts_into,
    start_operator_on,
};

const CLUSTER: &str = "tenant";

/// The predecessor's choice: not the hosts sip would pick first (cp-1, cp-2, wk-1, wk-2).
const ITS_HOSTS: [(&str, &str); 4] = [
    ("cp-3", "ControlPlane"),
    ("cp-4", "ControlPlane"),
    ("wk-3", "Worker"),
    ("wk-4", "Worker"),
];

/// Load balancer templates in the predecessor's Go syntax, over its data model.
const GO_CONTROL_PLANE: &str = include_str!("../fixtures/predecessor/loadBalancerControlPlane.cfg");
const GO_WORKER: &str = include_str!("../fixtures/predecessor/loadBalancerWorker.cfg");

fn its_labels(component: &str, instance: &str, app: &str) -> Value {
    json!({
        "app.kubernetes.io/part-of": "sip",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
    })
}

/// A Deployment as the predecessor wrote it: labelled, unowned, mounting `mounts`.
fn its_deployment(instance: &str, labels: &Value, mounts: &[(&str, &str)]) -> Value {
    let volumes: Vec<Value> = mounts
        .iter()
        .map(|(kind, name)| match *kind {
            "Secret" => {
                json!({"name": format!("v-{}", name.len()), "secret": {"secretName": name}})
            }
            _ => json!({"name": "cm", "configMap": {"name": name}}),
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": instance, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/its:1"}], "volumes": volumes},
            },
        },
    })
}

/// A NodePort Service as the predecessor wrote it: no labels, selecting its pods.
fn its_service(instance: &str, labels: &Value, ports: &[(u16, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(port, node_port)| json!({"name": format!("p-{port}"), "port": port, "nodePort": node_port}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": instance},
        "spec": {"type": "NodePort", "selector": labels, "ports": ports},
    })
}

/// Every object the predecessor leaves for the sample (its jump host cut short by a crash),
/// and a Secret of one of its names that a person made (it must stay).
fn predecessors_objects(cluster: &str) -> Vec<Value> {
    let lb_cp = format!("loadbalancer-controlplane-{cluster}");
    let lb_w = format!("loadbalancer-worker-{cluster}");
    let jump = format!("jumphost-{cluster}");
    let lb_cp_labels = its_labels("loadbalancer", &lb_cp, "haproxy");
    let lb_w_labels = its_labels("loadbalancer", &lb_w, "haproxy");
    let jump_labels = its_labels("jumphost", &jump, "jumphost");
    let worker_ports: Vec<(u16, u16)> = (30002..=30011).map(|p| (p, p)).collect();
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": lb_cp},
               "stringData": {"haproxy.cfg": "its rendering"}}),
        its_deployment(&lb_cp, &lb_cp_labels, &[("Secret", &lb_cp)]),
        its_service(&lb_cp, &lb_cp_labels, &[(6443, 30001)]),
        // Someone's own Secret under the worker balancer's name: not the predecessor's.
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": lb_w, "labels": {"team": "tenant-ops"}},
               "stringData": {"note": "not made by airshipit/sip"}}),
        its_deployment(&lb_w, &lb_w_labels, &[("Secret", &lb_w)]),
        its_service(&lb_w, &lb_w_labels, &worker_ports),
        // Its jump host as a crash left it: the Service, Secret and ConfigMap it writes first,
        // no Deployment. Only a failed apply (the port is held) finds it, by name.
        its_service(&jump, &jump_labels, &[(22, 30000)]),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": jump, "labels": jump_labels},
               "stringData": {"hosts": "[]"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": jump, "labels": jump_labels},
               "data": {"auth_keys": ""}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "loadbalancercontrolplane"},
               "data": {"loadBalancerControlPlane.cfg": GO_CONTROL_PLANE}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "loadbalancerworker"},
               "data": {"loadBalancerWorker.cfg": GO_WORKER}}),
    ]
}

/// The messages of the Events with `reason`, joined (`None`: none yet).
async fn event_message(events: &Api<KubeEvent>, reason: &str) -> Option<String> {
    let messages: Vec<String> = events
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test]
async fn a_cluster_left_by_the_predecessor_is_taken_over_without_moving_a_tenant() {
    // A control plane of its own: the sample's node ports are the shared one's static band.
    let cp = ControlPlane::start().await.expect("a control plane");
    let admin = cp.client().await.unwrap();
    let namespace = create_namespace(&admin, "migration").await.unwrap();
    load_hosts_into(&admin, &namespace).await;

    // The predecessor's SIPCluster: its sample as written, with the finalizer the user wrote
    // and the status it wrote (conditions only).
    let mut manifest = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    manifest["metadata"] =
        json!({"name": CLUSTER, "namespace": namespace, "finalizers": [FINALIZER]});
    let clusters: Api<SIPCluster> = Api::namespaced(admin.clone(), &namespace);
    let created: SIPCluster = serde_json::from_value(manifest).unwrap();
    clusters
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    clusters
        .patch_status(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                "message": "Reconciliation succeeded", "lastTransitionTime": "2021-07-01T00:00:00Z",
            }]}})),
        )
        .await
        .unwrap();
    // Its hosts, labeled by a full update as it did; its objects and template ConfigMaps.
    let hosts: Api<BareMetalHost> = Api::namespaced(admin.clone(), &namespace);
    for (host, role) in ITS_HOSTS {
        let labels = json!({"metadata": {"labels": {
            LABEL_CLUSTER_NAMESPACE: namespace, LABEL_CLUSTER_NAME: CLUSTER, LABEL_NODE_TYPE: role,
        }}});
        hosts
            .patch(host, &PatchParams::default(), &Patch::Merge(labels))
            .await
            .unwrap();
    }
    let objects: Vec<String> = predecessors_objects(CLUSTER)
        .iter()
        .map(Value::to_string)
        .collect();
    apply_yaml(&admin, &objects.join("\n---\n"), &namespace)
        .await
        .unwrap();
    let before = host_labels(&hosts).await;

    let (operator, _) = start_operator_on(&cp, &namespace, "migration").await;
    let started = Instant::now();
    wait_until(
        "the migrated cluster to be Ready",
        Duration::from_secs(90),
        || {
            let clusters = clusters.clone();
            async move {
                let c = clusters.get(CLUSTER).await.map_err(|e| e.to_string())?;
                let status = c.status.unwrap_or_default();
                match status.phase {
                    Some(Phase::Ready) => Ok(()),
                    _ => Err(format!("{:?} {:?}", status.phase, status.conditions)),
                }
            }
        },
    )
    .await;
    eprintln!(
        "figure: the predecessor's cluster Ready under sip in {:.1?}",
        started.elapsed()
    );

    // The tenant did not move: the same hosts, the same roles, no other host.
    let after = host_labels(&hosts).await;
    assert_eq!(
        after, before,
        "the predecessor's hosts stay labeled and no other is taken"
    );
    let want: BTreeMap<String, (String, String)> = ITS_HOSTS
        .iter()
        .map(|(h, r)| (h.to_string(), (CLUSTER.to_string(), r.to_string())))
        .collect();
    assert_eq!(after, want);
    let cluster = clusters.get(CLUSTER).await.unwrap();
    let status = cluster.status.clone().unwrap();
    assert_uninterrupted_story(&status, "a migration");
    let ledger: Vec<(&str, Option<&str>)> = status
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.reason.as_deref()))
        .collect();
    assert_eq!(ledger.len(), 4, "{ledger:?}");
    assert!(
        ledger
            .iter()
            .all(|(_, r)| *r == Some(sip::scheduling::ADOPTED)),
        "every host entered the ledger as adopted: {ledger:?}"
    );
    let chosen = &status.history[1].message;
    assert!(chosen.contains("4 adopted"), "{chosen}");

    // sip's services hold the predecessor's node ports.
    let services: Api<Service> = Api::namespaced(admin.clone(), &namespace);
    let mut node_ports: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for s in services.list(&ListParams::default()).await.unwrap() {
        let ports = s.spec.and_then(|s| s.ports).unwrap_or_default();
        node_ports.insert(
            s.metadata.name.unwrap(),
            ports.iter().filter_map(|p| p.node_port).collect(),
        );
    }
    assert_eq!(
        node_ports[&format!("{CLUSTER}-jump-host")],
        [30000],
        "{node_ports:?}"
    );
    assert_eq!(
        node_ports[&format!("{CLUSTER}-lb-control-plane")],
        [30001],
        "{node_ports:?}"
    );
    assert_eq!(
        node_ports[&format!("{CLUSTER}-lb-worker")],
        (30002..=30011).collect::<Vec<_>>()
    );

    // The predecessor's objects are gone; the Secret it did not make stays.
    let gone = |kind: &'static str, name: String| (kind, name);
    let expect_gone = [
        gone("Deployment", format!("loadbalancer-controlplane-{CLUSTER}")),
        gone("Deployment", format!("loadbalancer-worker-{CLUSTER}")),
        gone("Service", format!("loadbalancer-controlplane-{CLUSTER}")),
        gone("Service", format!("loadbalancer-worker-{CLUSTER}")),
        gone("Service", format!("jumphost-{CLUSTER}")),
        gone("Secret", format!("loadbalancer-controlplane-{CLUSTER}")),
        gone("Secret", format!("jumphost-{CLUSTER}")),
        gone("ConfigMap", format!("jumphost-{CLUSTER}")),
    ];
    let (deployments, secrets, config_maps): (Api<Deployment>, Api<Secret>, Api<ConfigMap>) = (
        Api::namespaced(admin.clone(), &namespace),
        Api::namespaced(admin.clone(), &namespace),
        Api::namespaced(admin.clone(), &namespace),
    );
    for (kind, name) in &expect_gone {
        let exists = match *kind {
            "Deployment" => deployments.get_opt(name).await.unwrap().is_some(),
            "Service" => services.get_opt(name).await.unwrap().is_some(),
            "Secret" => secrets.get_opt(name).await.unwrap().is_some(),
            _ => config_maps.get_opt(name).await.unwrap().is_some(),
        };
        assert!(!exists, "the predecessor's {kind} {name} is still there");
    }
    let kept = secrets
        .get(&format!("loadbalancer-worker-{CLUSTER}"))
        .await
        .unwrap();
    assert!(kept.metadata.labels.unwrap().contains_key("team"));

    // Its Go templates rendered sip's configuration, with the adopted hosts as backends.
    let cfg = secrets
        .get(&format!("{CLUSTER}-lb-control-plane"))
        .await
        .unwrap()
        .data
        .unwrap()["haproxy.cfg"]
        .0
        .clone();
    let cfg = String::from_utf8(cfg).unwrap();
    assert!(
        cfg.contains("frontend http-frontend\n  bind *:6443\n"),
        "{cfg}"
    );
    assert!(cfg.contains("\n  server cp-3 "), "{cfg}");
    assert!(cfg.contains("\n  server cp-4 "), "{cfg}");
    assert!(!cfg.contains("cp-1"), "{cfg}");

    // What was removed and what was left is told where people look.
    let events: Api<KubeEvent> = Api::namespaced(admin.clone(), &namespace);
    wait_until("the Events", Duration::from_secs(20), || {
        let events = events.clone();
        async move {
            for reason in ["PredecessorObjectKept", "PredecessorReplaced"] {
                event_message(&events, reason)
                    .await
                    .ok_or_else(|| format!("no {reason} Event yet"))?;
            }
            Ok(())
        }
    })
    .await;
    let replaced = event_message(&events, "PredecessorReplaced").await.unwrap();
    for object in [
        format!("Service jumphost-{CLUSTER}"),
        format!("Deployment loadbalancer-worker-{CLUSTER}"),
        format!("ConfigMap jumphost-{CLUSTER}"),
    ] {
        assert!(replaced.contains(&object), "{object}: {replaced}");
    }
    let kept_note = event_message(&events, "PredecessorObjectKept")
        .await
        .unwrap();
    assert!(
        kept_note.contains(&format!("Secret loadbalancer-worker-{CLUSTER}")),
        "{kept_note}"
    );

    // Deleting the cluster releases the adopted hosts like any others.
    clusters
        .delete(CLUSTER, &DeleteParams::default())
        .await
        .unwrap();
    wait_until("the cluster to be gone", Duration::from_secs(60), || {
        let clusters = clusters.clone();
        async move {
            match clusters.get_opt(CLUSTER).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(c) => Err(format!("{:?}", c.status.and_then(|s| s.phase))),
            }
        }
    })
    .await;
    assert_eq!(
        host_labels(&hosts).await,
        BTreeMap::new(),
        "no host stays labeled"
    );
    operator.abort();
}

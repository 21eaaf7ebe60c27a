//! What each service renders to, and templates over it.

use super::*;

#[test]
fn every_service_of_the_sample_renders_owned_labeled_objects() {
    let f = Fixture::new();
    let rendered = f.render();
    let names: Vec<(String, Vec<String>)> = rendered
        .iter()
        .map(|r| {
            let objects = r
                .objects
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", r.id));
            (
                r.name.clone(),
                objects.iter().map(Child::describe).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "tenant-lb-control-plane".into(),
                vec![
                    "Secret/tenant-lb-control-plane".into(),
                    "Service/tenant-lb-control-plane".into(),
                    "Deployment/tenant-lb-control-plane".into()
                ]
            ),
            (
                "tenant-lb-worker".into(),
                vec![
                    "Secret/tenant-lb-worker".into(),
                    "Service/tenant-lb-worker".into(),
                    "Deployment/tenant-lb-worker".into()
                ]
            ),
            (
                "tenant-jump-host".into(),
                vec![
                    "ConfigMap/tenant-jump-host".into(),
                    "Secret/tenant-jump-host".into(),
                    "Secret/tenant-jump-host-host-key".into(),
                    "Service/tenant-jump-host".into(),
                    "Deployment/tenant-jump-host".into()
                ]
            ),
            (
                "tenant-oidc".into(),
                vec![
                    "ServiceAccount/tenant-oidc".into(),
                    "Secret/tenant-oidc".into(),
                    "Service/tenant-oidc".into(),
                    "Deployment/tenant-oidc".into()
                ]
            ),
        ]
    );
    for r in &rendered {
        // What is read ahead of rendering names every object, in render order.
        let read_ahead: Vec<String> = object_names(r.id.kind, &r.name)
            .into_iter()
            .map(|(resource, name)| format!("{}/{name}", resource.kind))
            .filter(|object| names.iter().any(|(_, rendered)| rendered.contains(object)))
            .collect();
        let described: Vec<String> = r
            .objects
            .as_ref()
            .unwrap()
            .iter()
            .map(Child::describe)
            .collect();
        assert_eq!(read_ahead, described, "{}", r.name);
        for child in r.objects.as_ref().unwrap() {
            let m = child.metadata();
            let what = child.describe();
            assert_eq!(m.namespace.as_deref(), Some("tenants"), "{what}");
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("0000-tenant", Some(true)),
                "{what}"
            );
            let labels = m.labels.as_ref().unwrap();
            assert_eq!(labels[meta::LABEL_MANAGED_BY], meta::MANAGED_BY, "{what}");
            assert_eq!(labels[crate::api::LABEL_CLUSTER_NAME], "tenant", "{what}");
            // What pruning and decommissioning list by: this cluster's selector finds every
            // child, another cluster's none.
            let selects = |selector: String| {
                selector.split(',').all(|pair| {
                    let (k, v) = pair.split_once('=').expect("key=value pairs");
                    labels.get(k).map(String::as_str) == Some(v)
                })
            };
            assert!(selects(meta::children_selector("tenant")), "{what}");
            assert!(!selects(meta::children_selector("other")), "{what}");
            let value = child.to_value();
            assert_eq!(value["kind"], child.kind(), "{what} serializes its kind");
            let resource = child.resource();
            assert_eq!(
                (resource.kind.as_str(), resource.api_version.as_str()),
                (child.kind(), value["apiVersion"].as_str().unwrap()),
                "{what}: its API resource"
            );
            assert!(value["apiVersion"].is_string(), "{what}");
        }
    }
}

#[test]
fn the_control_plane_balancer_sends_6443_to_each_control_plane_member() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::LoadBalancerControlPlane).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    let servers: Vec<&str> = cfg
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 2, "{cfg}");
    assert!(
        servers[0].trim() == "server cp-1 192.168.100.11:6443",
        "{cfg}"
    );
    assert!(
        servers[1].contains("server cp-2 [fd00::12]:6443"),
        "IPv6 is bracketed: {cfg}"
    );
    for line in [
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "option log-health-checks",
        "default-server check check-ssl verify none inter 5s downinter 2s fall 4 on-marked-down shutdown-sessions",
        "timeout connect 30s",
        "timeout client 600s",
        "timeout server 600s",
        "retries 1",
    ] {
        assert!(
            cfg.lines().any(|l| l.trim() == line),
            "the predecessor's check tuning, {line:?}: {cfg}"
        );
    }
    assert!(
        !cfg.contains("cp-9") && !cfg.contains("wk-"),
        "only members of the role: {cfg}"
    );
    let service = children
        .iter()
        .find_map(|c| match c {
            Child::Service(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.node_port), (6443, Some(30001)));
}

#[test]
fn the_worker_balancer_has_a_frontend_and_node_port_per_port_of_the_range() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::LoadBalancerWorker).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    for port in 30002..=30011 {
        assert!(
            cfg.contains(&format!("frontend port-{port}\n  bind *:{port}")),
            "{port}: {cfg}"
        );
        assert!(
            cfg.contains(&format!("server wk-1 192.168.100.21:{port}\n")),
            "{port}"
        );
        assert!(
            cfg.contains(&format!("server wk-2 192.168.100.22:{port}\n")),
            "{port}"
        );
    }
    assert!(
        cfg.lines().any(|l| l.trim()
            == "default-server check inter 5s downinter 2s fall 4 on-marked-down shutdown-sessions"),
        "every worker is health-checked: {cfg}"
    );
    assert!(!cfg.contains("wk-9") && !cfg.contains("cp-"), "{cfg}");
    let service = children
        .iter()
        .find_map(|c| match c {
            Child::Service(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(ports.len(), 10);
    assert!(ports.iter().all(|p| p.node_port == Some(p.port)));
}

#[test]
fn configs_follow_the_members_not_the_ledger_order() {
    let f = Fixture::new();
    let before = pod_hash(&f.only(ServiceKind::LoadBalancerControlPlane).unwrap());
    let mut reordered = Fixture::new();
    reordered.hosts.reverse();
    let same = pod_hash(
        &reordered
            .only(ServiceKind::LoadBalancerControlPlane)
            .unwrap(),
    );
    assert_eq!(before, same, "the ledger's order does not roll pods");
    let mut grown = Fixture::new();
    grown.hosts[4].state = HostState::Extracted;
    let rolled = pod_hash(&grown.only(ServiceKind::LoadBalancerControlPlane).unwrap());
    assert_ne!(before, rolled, "a new backend rolls the pods");
    let cfg = data(
        secret_of(&grown.only(ServiceKind::LoadBalancerControlPlane).unwrap()),
        "haproxy.cfg",
    );
    assert!(cfg.contains("server cp-9 192.168.100.19:6443"), "{cfg}");
}

#[test]
fn a_config_map_written_for_the_predecessor_renders_as_it_did_there() {
    let mut f = Fixture::new();
    f.config_maps.insert(
        "loadbalancerworker".into(),
        config_map(WORKER_TEMPLATE_KEY, GO_WORKER),
    );
    let children = f.only(ServiceKind::LoadBalancerWorker).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    assert!(
        cfg.contains("\nfrontend port-30002-frontend\n  bind *:30002\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("\n  server wk-1 192.168.100.21:30002\n"),
        "{cfg}"
    );
    // The annotation overrides what the text suggests: Jinja read as Jinja, Go as Go.
    let mut cm = config_map(WORKER_TEMPLATE_KEY, GO_WORKER);
    cm.metadata.annotations = Some(BTreeMap::from([(
        template::ANNOTATION_SYNTAX.to_string(),
        "jinja".to_string(),
    )]));
    let mut f = Fixture::new();
    f.config_maps.insert("loadbalancerworker".into(), cm);
    let err = f.render()[1].objects.as_ref().unwrap_err().to_string();
    assert!(err.contains("templates use Jinja syntax"), "{err}");
}

#[test]
fn a_template_config_map_overrides_the_built_in_and_its_errors_are_clear() {
    let mut f = Fixture::new();
    f.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, OVERRIDE),
    );
    let children = f.only(ServiceKind::LoadBalancerControlPlane).unwrap();
    let cfg = data(secret_of(&children), "haproxy.cfg");
    assert!(
        cfg.contains("listen api\n  bind *:6443\n  server cp-1 192.168.100.11:6443 check\n"),
        "{cfg}"
    );

    let cases = [
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{{ range .Servers }}"),
            "the Go template from ConfigMap tenants/loadbalancercontrolplane key loadBalancerControlPlane.cfg (the predecessor's syntax) cannot be rendered: line 1: Go template syntax: range without {{end}}",
        ),
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{{ ports }}"),
            "undefined",
        ),
        (
            config_map(CONTROL_PLANE_TEMPLATE_KEY, "{# nothing #}"),
            "rendered an empty configuration",
        ),
        (
            config_map("haproxy.cfg", OVERRIDE),
            "has no key \"loadBalancerControlPlane.cfg\"",
        ),
    ];
    for (cm, needle) in cases {
        let mut f = Fixture::new();
        f.config_maps.insert("loadbalancercontrolplane".into(), cm);
        let rendered = f.render();
        let err = rendered[0].objects.as_ref().unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.starts_with("loadBalancerControlPlane[0]"), "{err}");
        assert!(
            rendered[1..].iter().all(|r| r.objects.is_ok()),
            "other services are unaffected"
        );
    }
}

/// A fixed cluster IP in a service's spec is the cluster IP of its Service; without one the
/// API server picks.
#[test]
fn a_fixed_cluster_ip_is_the_services() {
    let service_ip = |f: &Fixture, kind: ServiceKind| {
        f.only(kind)
            .expect("rendered")
            .iter()
            .find_map(|c| match c {
                Child::Service(s) => Some(s.spec.as_ref().unwrap().cluster_ip.clone()),
                _ => None,
            })
            .expect("a Service")
    };
    let kinds = [
        ServiceKind::LoadBalancerControlPlane,
        ServiceKind::LoadBalancerWorker,
        ServiceKind::JumpHost,
        ServiceKind::Auth,
    ];
    let mut f = Fixture::new();
    for kind in kinds {
        assert_eq!(service_ip(&f, kind), None, "{kind:?}");
    }
    let services = &mut f.spec.services;
    services.load_balancer_control_plane[0].common.cluster_ip = Some("10.96.0.11".into());
    services.load_balancer_worker[0].common.cluster_ip = Some("10.96.0.12".into());
    services.jump_host[0].common.cluster_ip = Some("10.96.0.13".into());
    services.auth[0].cluster_ip = Some("10.96.0.14".into());
    for (kind, ip) in kinds.into_iter().zip(11..) {
        assert_eq!(
            service_ip(&f, kind),
            Some(format!("10.96.0.{ip}")),
            "{kind:?}"
        );
    }
}

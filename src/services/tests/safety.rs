//! Secrets stay where they belong, pods run restricted, haproxy accepts every configuration.

use super::*;

#[test]
fn bmc_passwords_reach_only_the_jump_host_secret() {
    let f = Fixture::new();
    for r in f.render() {
        for child in r.objects.unwrap() {
            let text = serde_json::to_string(&child.to_value()).unwrap();
            let decoded: String = match &child {
                Child::Secret(s) => s
                    .data
                    .iter()
                    .flatten()
                    .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
                    .collect(),
                _ => String::new(),
            };
            let carries = text.contains(PASSWORD_PREFIX) || decoded.contains(PASSWORD_PREFIX);
            let allowed = child.describe() == "Secret/tenant-jump-host";
            assert_eq!(carries, allowed, "{}", child.describe());
            if let Child::ConfigMap(cm) = &child {
                let all: String = cm.data.iter().flatten().map(|(_, v)| v.as_str()).collect();
                assert!(
                    !all.contains("PRIVATE KEY") && !all.contains("client-secret-value"),
                    "{}",
                    child.describe()
                );
            }
        }
    }
}

#[test]
fn pods_run_restricted_where_the_image_allows() {
    let f = Fixture::new();
    for r in f.render() {
        let children = r.objects.unwrap();
        let pod = pod_of(&children);
        assert_eq!(
            pod.automount_service_account_token,
            Some(r.id.kind == ServiceKind::Auth),
            "{}",
            r.id
        );
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", r.id);
            assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", r.id);
            if r.id.kind != ServiceKind::JumpHost {
                assert_eq!(sc.run_as_non_root, Some(true), "{}", r.id);
                assert_eq!(
                    sc.capabilities.as_ref().unwrap().drop.as_deref(),
                    Some(&["ALL".to_string()][..])
                );
            }
        }
    }
}

/// `haproxy -c` on every configuration the operator can write. haproxy comes from
/// `tools/test-tools/ensure.sh`, which installs it when missing; only the explicit opt-out
/// `SIP_ALLOW_MISSING_TOOLS` lets this test skip when it cannot.
#[test]
fn haproxy_accepts_every_rendered_configuration() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-tools/ensure.sh");
    let ensured = Command::new("bash").arg(script).output().unwrap();
    if !ensured.status.success() {
        assert!(
            std::env::var_os("SIP_ALLOW_MISSING_TOOLS").is_some(),
            "haproxy is required and {script} could not install it: {}",
            String::from_utf8_lossy(&ensured.stderr)
        );
        eprintln!("SIP_ALLOW_MISSING_TOOLS is set and haproxy is missing: skipping");
        return;
    }
    let version = Command::new("haproxy").arg("-v").output().unwrap();
    assert!(version.status.success());
    let mut overridden = Fixture::new();
    overridden.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, OVERRIDE),
    );
    // ConfigMaps written for the predecessor, in its Go template syntax.
    let mut predecessors = Fixture::new();
    predecessors.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, GO_CONTROL_PLANE),
    );
    predecessors.config_maps.insert(
        "loadbalancerworker".into(),
        config_map(WORKER_TEMPLATE_KEY, GO_WORKER),
    );
    let mut empty = Fixture::new();
    empty.hosts.clear();
    let dir = std::env::temp_dir().join(format!("sip-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = 0;
    for (what, f) in [
        ("default", Fixture::new()),
        ("overridden", overridden),
        ("the predecessor's", predecessors),
        ("no members", empty),
    ] {
        for r in f
            .render()
            .into_iter()
            .filter(|r| r.id.kind != ServiceKind::JumpHost && r.id.kind != ServiceKind::Auth)
        {
            let children = r.objects.unwrap();
            let cfg = data(secret_of(&children), "haproxy.cfg");
            let path = dir.join(format!("{what}-{}.cfg", r.name));
            std::fs::write(&path, &cfg).unwrap();
            let out = Command::new("haproxy")
                .arg("-c")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what} {}: haproxy -c failed:\n{}{}\n{cfg}",
                r.id,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(checked, 8);
}

/// A template ConfigMap over the size limit is refused, naming the ConfigMap and the limit,
/// before anything parses it.
#[test]
fn an_oversized_template_config_map_is_refused_by_name() {
    let mut f = Fixture::new();
    let huge = "# padding\n".repeat(template::MAX_TEMPLATE / 10 + 1);
    f.config_maps.insert(
        "loadbalancercontrolplane".into(),
        config_map(CONTROL_PLANE_TEMPLATE_KEY, &huge),
    );
    let error = f
        .only(ServiceKind::LoadBalancerControlPlane)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("loadbalancercontrolplane") && error.contains("65536-byte limit"),
        "{error}"
    );
}

/// Whatever the node keys Secret holds is mounted where the tenant logs in: a ServiceAccount
/// token Secret, or a type the jump host does not take, is refused before anything renders.
#[test]
fn a_service_account_token_secret_is_never_handed_to_the_jump_host() {
    for (type_, says) in [
        (
            "kubernetes.io/service-account-token",
            "is a ServiceAccount token Secret",
        ),
        (
            "kubernetes.io/dockerconfigjson",
            "has type kubernetes.io/dockerconfigjson",
        ),
    ] {
        let mut f = Fixture::new();
        f.secrets.get_mut("ssh-private-keys").unwrap().type_ = Some(type_.into());
        let error = f.only(ServiceKind::JumpHost).expect_err(type_).to_string();
        assert!(
            error.contains("ssh-private-keys") && error.contains(says),
            "{type_}: {error}"
        );
    }
    for type_ in [None, Some("Opaque"), Some("kubernetes.io/ssh-auth")] {
        let mut f = Fixture::new();
        f.secrets.get_mut("ssh-private-keys").unwrap().type_ = type_.map(str::to_string);
        assert!(f.only(ServiceKind::JumpHost).is_ok(), "{type_:?} is taken");
    }
}

//! The OIDC provider: its configuration and its input errors.

use super::*;

#[test]
fn the_oidc_provider_is_configured_from_the_users_secret() {
    let f = Fixture::new();
    let children = f.only(ServiceKind::Auth).unwrap();
    let config: serde_json::Value =
        serde_norway::from_str(&data(secret_of(&children), "config.yaml")).unwrap();
    assert_eq!(config["issuer"], "https://dex.tenant.example:30556");
    assert_eq!(config["web"]["https"], "0.0.0.0:5556");
    assert_eq!(config["web"]["tlsCert"], "/etc/dex/tls/tls.crt");
    assert_eq!(config["storage"]["type"], "kubernetes");
    assert_eq!(config["connectors"][0]["id"], "ldap");
    assert_eq!(config["staticClients"][0]["id"], "tenant-apiserver");
    let pod = pod_of(&children);
    assert_eq!(pod.service_account_name.as_deref(), Some("tenant-oidc"));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_non_root, sc.read_only_root_filesystem),
        (Some(true), Some(true))
    );

    let mut plain = Fixture::new();
    plain.spec.services.auth[0].tls_secret = None;
    plain.spec.services.auth[0].storage = AuthStorage::Memory;
    let children = plain.only(ServiceKind::Auth).unwrap();
    assert_eq!(
        children
            .iter()
            .filter(|c| c.kind() == "ServiceAccount")
            .count(),
        0
    );
    let config: serde_json::Value =
        serde_norway::from_str(&data(secret_of(&children), "config.yaml")).unwrap();
    assert_eq!(config["web"]["http"], "0.0.0.0:5556");
    assert_eq!(config["storage"]["type"], "memory");
}

#[test]
fn oidc_input_errors_name_the_fix_without_quoting_secrets() {
    let cases: [(Break, &str); 6] = [
        (
            |f| {
                f.secrets.remove("dex-config");
            },
            "Secret tenants/dex-config (auth configSecret) does not exist",
        ),
        (
            |f| {
                f.secrets
                    .insert("dex-config".into(), secret(&[("staticClients", "[]")]));
            },
            "has no `connectors`",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[(
                        "connectors",
                        "- id: a\n  bindPW: client-secret-value\n :\n- [",
                    )]),
                );
            },
            "key \"connectors\" is not YAML at line",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[("connectors", "client-secret-value: 1")]),
                );
            },
            "must be a YAML list",
        ),
        (
            |f| {
                f.secrets.insert(
                    "dex-config".into(),
                    secret(&[(
                        "connectors",
                        "- type: ldap\n  name: no id client-secret-value",
                    )]),
                );
            },
            "connectors[0] has no id",
        ),
        (
            |f| {
                f.secrets
                    .insert("dex-tls".into(), secret(&[("tls.crt", "x")]));
            },
            "Secret tenants/dex-tls has no tls.key",
        ),
    ];
    assert_breaks(ServiceKind::Auth, &cases, &["client-secret-value"]);
}

#[test]
fn the_oidc_provider_runs_where_its_node_labels_say() {
    let mut f = Fixture::new();
    let anywhere = f.only(ServiceKind::Auth).unwrap();
    assert_eq!(pod_of(&anywhere).node_selector, None);
    let labels = BTreeMap::from([("dex".to_string(), "here".to_string())]);
    f.spec.services.auth[0].node_labels = labels.clone();
    let pinned = f.only(ServiceKind::Auth).unwrap();
    assert_eq!(pod_of(&pinned).node_selector, Some(labels));
}

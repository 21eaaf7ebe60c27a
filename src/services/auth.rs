//! The OpenID Connect provider: Dex, configured with the issuer, the connectors and static
//! clients from a Secret the user owns, and optional TLS. Its whole configuration holds client
//! secrets, so it lives in a Secret.

use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, PodSpec, Probe, Secret, SecretVolumeSource, ServiceAccount,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::{Child, Facts, ServiceError, ServiceId, meta, pod, secrets};
use crate::api::{Auth, AuthStorage};

/// Dex's image, pinned; override it per cluster with `image`.
pub const DEX_IMAGE: &str = "ghcr.io/dexidp/dex:v2.41.1";
/// The uid of the `dex` user in the official image.
const DEX_UID: i64 = 1001;
const WEB_PORT: u16 = 5556;
const TELEMETRY_PORT: u16 = 5558;
const CONFIG_KEY: &str = "config.yaml";
const CONFIG_DIR: &str = "/etc/dex/cfg";
const TLS_DIR: &str = "/etc/dex/tls";

pub fn render(facts: &Facts<'_>, id: ServiceId, name: &str) -> Result<Vec<Child>, ServiceError> {
    let spec = &facts.spec.services.auth[id.index];
    let config = config(facts, id, spec)?;
    let instance = facts.instance(id, name);
    let hash = meta::config_hash([(CONFIG_KEY, config.as_bytes())]);
    let mut children = Vec::new();
    let kubernetes_storage = spec.storage == AuthStorage::Kubernetes;
    if kubernetes_storage {
        children.push(Child::ServiceAccount(ServiceAccount {
            metadata: instance.meta(),
            ..ServiceAccount::default()
        }));
    }
    children.push(Child::Secret(
        instance.secret([(CONFIG_KEY, config.into_bytes())]),
    ));
    let scheme = if spec.tls_secret.is_some() {
        "https"
    } else {
        "http"
    };
    children.push(Child::Service(pod::service(
        &instance,
        vec![pod::port(scheme.into(), WEB_PORT, spec.node_port)],
        spec.node_port.is_some(),
        spec.cluster_ip.as_ref(),
    )));
    children.push(Child::Deployment(pod::deployment(
        &instance,
        hash,
        pod_spec(spec, name, kubernetes_storage),
    )));
    Ok(children)
}

/// A YAML list from the user's Secret, `None` when the key is absent.
fn list(
    id: ServiceId,
    secret_name: &str,
    secret: &Secret,
    key: &str,
) -> Result<Option<Vec<Value>>, ServiceError> {
    let Some(raw) = secret.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    let invalid = |problem: String| ServiceError::SecretInvalid {
        service: id,
        secret: secret_name.into(),
        problem,
    };
    let value: Value = serde_norway::from_slice(&raw.0).map_err(|e| {
        // Positions only: the parser's message may quote the (secret) content.
        let at = e
            .location()
            .map_or(String::new(), |l| format!(" at line {}", l.line()));
        invalid(format!(
            "key {key:?} is not YAML{at}; it must be a list in Dex's format"
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(invalid(format!(
            "key {key:?} must be a YAML list in Dex's format"
        )));
    };
    for (i, item) in items.iter().enumerate() {
        if item
            .get("id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(format!("{key}[{i}] has no id")));
        }
    }
    Ok(Some(items))
}

fn config(facts: &Facts<'_>, id: ServiceId, spec: &Auth) -> Result<String, ServiceError> {
    let secret_name = format!("{}/{}", facts.namespace, spec.config_secret);
    let secret = secrets::named(
        facts,
        id,
        &spec.config_secret,
        "auth configSecret",
        &secrets::CONFIG,
    )?;
    let connectors = list(id, &secret_name, secret, "connectors")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ServiceError::SecretInvalid {
            service: id,
            secret: secret_name.clone(),
            problem: "has no `connectors`; add a YAML list of Dex connectors under that key".into(),
        })?;
    let static_clients = list(id, &secret_name, secret, "staticClients")?.unwrap_or_default();

    let web = match &spec.tls_secret {
        None => json!({"http": format!("0.0.0.0:{WEB_PORT}")}),
        Some(tls) => {
            let tls_name = format!("{}/{tls}", facts.namespace);
            let tls_secret = secrets::named(facts, id, tls, "auth tlsSecret", &secrets::TLS)?;
            for key in ["tls.crt", "tls.key"] {
                if !tls_secret
                    .data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key))
                {
                    return Err(ServiceError::SecretInvalid {
                        service: id,
                        secret: tls_name,
                        problem: format!("has no {key}; it must be a kubernetes.io/tls Secret"),
                    });
                }
            }
            json!({
                "https": format!("0.0.0.0:{WEB_PORT}"),
                "tlsCert": format!("{TLS_DIR}/tls.crt"),
                "tlsKey": format!("{TLS_DIR}/tls.key"),
            })
        }
    };
    let storage = match spec.storage {
        AuthStorage::Memory => json!({"type": "memory"}),
        AuthStorage::Kubernetes => json!({"type": "kubernetes", "config": {"inCluster": true}}),
    };
    let config = json!({
        "issuer": spec.issuer,
        "storage": storage,
        "web": web,
        "telemetry": {"http": format!("0.0.0.0:{TELEMETRY_PORT}")},
        "oauth2": {"skipApprovalScreen": true},
        "enablePasswordDB": false,
        "connectors": connectors,
        "staticClients": static_clients,
    });
    Ok(serde_norway::to_string(&config).unwrap_or_default())
}

fn pod_spec(spec: &Auth, name: &str, kubernetes_storage: bool) -> PodSpec {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(TELEMETRY_PORT.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let secret_volume = |volume: &str, secret: &str| Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![secret_volume("config", name)];
    if let Some(tls) = &spec.tls_secret {
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(secret_volume("tls", tls));
    }
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let dex = k8s_openapi::api::core::v1::Container {
        args: Some(vec![
            "dex".into(),
            "serve".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![
            port("web", WEB_PORT),
            port("telemetry", TELEMETRY_PORT),
        ]),
        volume_mounts: Some(mounts),
        readiness_probe: Some(probe("/healthz/ready", 5)),
        liveness_probe: Some(probe("/healthz/live", 20)),
        resources: pod::resources("50m", "64Mi", "256Mi"),
        security_context: pod::restricted(DEX_UID),
        ..pod::container("dex", spec.image.as_deref().unwrap_or(DEX_IMAGE))
    };
    PodSpec {
        containers: vec![dex],
        volumes: Some(volumes),
        node_selector: pod::node_selector(&spec.node_labels),
        security_context: pod::pod_security(Some(DEX_UID)),
        service_account_name: kubernetes_storage.then(|| name.to_string()),
        automount_service_account_token: Some(kubernetes_storage),
        ..PodSpec::default()
    }
}

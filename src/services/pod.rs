//! The Deployment and Service shapes every support service shares: one replica set of pods
//! with a restricted security context, published by a Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{ANNOTATION_CONFIG_HASH, Instance};

/// Requests and limits: small services, sized for the management cluster to pack many.
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Option<ResourceRequirements> {
    let q = |s: &str| Quantity(s.to_string());
    Some(ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q(cpu)),
            ("memory".to_string(), q(memory)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q(memory_limit))])),
        ..ResourceRequirements::default()
    })
}

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    })
}

/// The `restricted` Pod Security Standard for a container that runs as `uid`.
pub fn restricted(uid: i64) -> Option<SecurityContext> {
    Some(SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    })
}

pub fn pod_security(fs_group: Option<i64>) -> Option<PodSecurityContext> {
    Some(PodSecurityContext {
        fs_group,
        seccomp_profile: runtime_default(),
        ..PodSecurityContext::default()
    })
}

pub fn node_selector(labels: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!labels.is_empty()).then(|| labels.clone())
}

/// The control-plane node label, and the taint kubeadm puts on control-plane nodes.
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";
/// The same taint as kubeadm wrote it before Kubernetes 1.24; some clusters still carry it.
const LEGACY_MASTER_ROLE: &str = "node-role.kubernetes.io/master";

/// Pods that belong on the management cluster's control-plane nodes, as the predecessor placed
/// its load balancers (their node ports then live where the tenant expects its API): selected
/// by the control-plane role unless `labels` name other nodes, tolerating the control-plane
/// taints either way.
pub fn control_plane_placement(spec: PodSpec, labels: &BTreeMap<String, String>) -> PodSpec {
    let selector = node_selector(labels)
        .unwrap_or_else(|| BTreeMap::from([(CONTROL_PLANE_ROLE.to_string(), String::new())]));
    let tolerate = |key: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    };
    PodSpec {
        node_selector: Some(selector),
        tolerations: Some(vec![
            tolerate(CONTROL_PLANE_ROLE),
            tolerate(LEGACY_MASTER_ROLE),
        ]),
        ..spec
    }
}

/// The instance's one-replica Deployment; its pods carry the instance's labels and roll when
/// `config_hash` changes.
pub fn deployment(instance: &Instance<'_>, config_hash: String, spec: PodSpec) -> Deployment {
    Deployment {
        metadata: instance.meta(),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(instance.selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(instance.labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        ANNOTATION_CONFIG_HASH.to_string(),
                        config_hash,
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// A TCP port of a Service, published on `node_port` when given.
pub fn port(name: String, port: u16, node_port: Option<u16>) -> ServicePort {
    ServicePort {
        name: Some(name),
        protocol: Some("TCP".into()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        node_port: node_port.map(Into::into),
        ..ServicePort::default()
    }
}

/// The instance's Service, selecting its pods: NodePort when `node_port`, else ClusterIP.
pub fn service(
    instance: &Instance<'_>,
    ports: Vec<ServicePort>,
    node_port: bool,
    cluster_ip: Option<&String>,
) -> Service {
    Service {
        metadata: instance.meta(),
        spec: Some(ServiceSpec {
            type_: Some(if node_port { "NodePort" } else { "ClusterIP" }.into()),
            selector: Some(instance.selector()),
            ports: Some(ports),
            cluster_ip: cluster_ip.cloned(),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A container with the fields every service sets.
pub fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

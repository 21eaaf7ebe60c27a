//! HAProxy load balancers: the control-plane one in front of the tenant API (6443 on every
//! control-plane host) and the worker one in front of a range of node ports on every worker.
//! Each is a Secret holding `haproxy.cfg`, a Deployment and a NodePort Service.

use k8s_openapi::api::core::v1::{
    ContainerPort, PodSpec, Probe, SecretVolumeSource, ServicePort, TCPSocketAction, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::template::{self, GoModel, Template};
use super::{Child, Facts, ServiceError, ServiceId, address, host_part, members, meta, pod};
use crate::api::{NodeRole, ServiceCommon};

/// HAProxy 3.2 is the current long-term-support branch (maintained into 2030).
pub const HAPROXY_IMAGE: &str = "haproxy:3.2";
/// The uid and gid of the `haproxy` user in the official image.
const HAPROXY_UID: i64 = 99;
/// The port the tenant kube-apiservers listen on.
const KUBE_API_PORT: u16 = 6443;
const CONFIG_DIR: &str = "/usr/local/etc/haproxy";
const CONFIG_KEY: &str = "haproxy.cfg";

pub const CONTROL_PLANE_TEMPLATE: &str = include_str!("templates/control-plane.cfg.j2");
pub const WORKER_TEMPLATE: &str = include_str!("templates/worker.cfg.j2");
pub const CONTROL_PLANE_CONFIG_MAP: &str = "loadbalancercontrolplane";
pub const CONTROL_PLANE_TEMPLATE_KEY: &str = "loadBalancerControlPlane.cfg";
pub const WORKER_CONFIG_MAP: &str = "loadbalancerworker";
pub const WORKER_TEMPLATE_KEY: &str = "loadBalancerWorker.cfg";

/// What a template sees (documented in the README).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Model<'a> {
    cluster: ClusterModel<'a>,
    service: ServiceModel<'a>,
    servers: Vec<Server>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<u16>>,
}

impl<'a> Model<'a> {
    /// The fields both load balancers' templates see.
    fn new(
        facts: &'a Facts<'_>,
        id: ServiceId,
        name: &'a str,
        common: &'a ServiceCommon,
        node_port: Option<u16>,
    ) -> Self {
        Model {
            cluster: ClusterModel {
                name: facts.cluster_name,
                namespace: facts.namespace,
            },
            service: ServiceModel {
                name,
                index: id.index,
                node_interface_id: &common.node_interface_id,
                node_port,
            },
            servers: Vec::new(),
            container_port: None,
            ports: None,
        }
    }
}

impl Model<'_> {
    /// What the predecessor's Go templates saw: its ports (named as it named them) and the
    /// servers.
    fn predecessors(&self, ports: Vec<(String, u16)>) -> GoModel {
        let servers = self
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.ip.clone()))
            .collect();
        GoModel { ports, servers }
    }
}

#[derive(Serialize)]
struct ClusterModel<'a> {
    name: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceModel<'a> {
    name: &'a str,
    index: usize,
    node_interface_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_port: Option<u16>,
}

#[derive(Serialize)]
struct Server {
    /// The BareMetalHost's name.
    name: String,
    ip: String,
    /// `ip`, bracketed when IPv6: write `{{ s.host }}:{{ port }}`.
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

fn servers(
    facts: &Facts<'_>,
    id: ServiceId,
    role: NodeRole,
    interface: &str,
    port: Option<u16>,
) -> Result<Vec<Server>, ServiceError> {
    members(facts.hosts, Some(role))
        .into_iter()
        .map(|h| {
            let ip = address(id, h, interface)?;
            Ok(Server {
                name: h.name.clone(),
                ip: ip.to_string(),
                host: host_part(ip),
                port,
            })
        })
        .collect()
}

pub fn control_plane(
    facts: &Facts<'_>,
    id: ServiceId,
    name: &str,
) -> Result<Vec<Child>, ServiceError> {
    let spec = &facts.spec.services.load_balancer_control_plane[id.index];
    let common = &spec.common;
    let interface = &common.node_interface_id;
    let model = Model {
        container_port: Some(KUBE_API_PORT),
        servers: servers(
            facts,
            id,
            NodeRole::ControlPlane,
            interface,
            Some(KUBE_API_PORT),
        )?,
        ..Model::new(facts, id, name, common, spec.node_port)
    };
    let template = template::pick(
        id,
        facts.config_maps,
        facts.namespace,
        (CONTROL_PLANE_CONFIG_MAP, CONTROL_PLANE_TEMPLATE_KEY),
        CONTROL_PLANE_TEMPLATE,
    )?;
    let config = template::render(
        id,
        &template,
        &model,
        || model.predecessors(vec![("http".into(), KUBE_API_PORT)]),
        facts.renderer,
    )?;
    let ports = vec![pod::port("kube-api".into(), KUBE_API_PORT, spec.node_port)];
    Ok(haproxy(facts.instance(id, name), common, config, ports))
}

pub fn worker(facts: &Facts<'_>, id: ServiceId, name: &str) -> Result<Vec<Child>, ServiceError> {
    let spec = &facts.spec.services.load_balancer_worker[id.index];
    let common = &spec.common;
    let range = spec.node_port_range;
    let port_list: Vec<u16> = (range.start..=range.end).collect();
    let model = Model {
        ports: Some(port_list.clone()),
        servers: servers(facts, id, NodeRole::Worker, &common.node_interface_id, None)?,
        ..Model::new(facts, id, name, common, None)
    };
    let template = pick_worker(facts, id)?;
    let config = template::render(
        id,
        &template,
        &model,
        || {
            model.predecessors(
                port_list
                    .iter()
                    .map(|p| (format!("port-{p}"), *p))
                    .collect(),
            )
        },
        facts.renderer,
    )?;
    // Each port is published as the same node port, as the predecessor did.
    let ports = port_list
        .iter()
        .map(|&p| pod::port(format!("port-{p}"), p, Some(p)))
        .collect();
    Ok(haproxy(facts.instance(id, name), common, config, ports))
}

fn pick_worker<'a>(facts: &'a Facts<'_>, id: ServiceId) -> Result<Template<'a>, ServiceError> {
    template::pick(
        id,
        facts.config_maps,
        facts.namespace,
        (WORKER_CONFIG_MAP, WORKER_TEMPLATE_KEY),
        WORKER_TEMPLATE,
    )
}

fn haproxy(
    instance: meta::Instance<'_>,
    common: &ServiceCommon,
    config: String,
    ports: Vec<ServicePort>,
) -> Vec<Child> {
    let name = instance.name;
    let hash = meta::config_hash([(CONFIG_KEY, config.as_bytes())]);
    let secret = instance.secret([(CONFIG_KEY, config.into_bytes())]);
    let first_port = ports.first().map_or(KUBE_API_PORT as i32, |p| p.port);
    let probe = |period: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(first_port),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let container = k8s_openapi::api::core::v1::Container {
        command: Some(vec![
            "haproxy".into(),
            "-db".into(),
            "-f".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(
            ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(format!("p-{}", p.port)),
                    container_port: p.port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        readiness_probe: Some(probe(5)),
        liveness_probe: Some(probe(20)),
        resources: pod::resources("50m", "64Mi", "256Mi"),
        security_context: pod::restricted(HAPROXY_UID),
        ..pod::container("haproxy", common.image.as_deref().unwrap_or(HAPROXY_IMAGE))
    };
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.into()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        security_context: pod::pod_security(Some(HAPROXY_UID)),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    };
    let pod_spec = pod::control_plane_placement(pod_spec, &common.node_labels);
    vec![
        Child::Secret(secret),
        Child::Service(pod::service(
            &instance,
            ports,
            true,
            common.cluster_ip.as_ref(),
        )),
        Child::Deployment(pod::deployment(&instance, hash, pod_spec)),
    ]
}

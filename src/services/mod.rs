//! The support services of a SIPCluster (HAProxy load balancers, the SSH jump host, the Dex
//! OIDC provider) rendered as Kubernetes objects. Pure: the spec, the ledger and the Secrets
//! and ConfigMaps the controller read go in; per service, its objects or an error that names
//! the fix come out. Applying them is the controller's job.

mod auth;
mod child;
mod error;
mod jumphost;
mod loadbalancer;
pub mod meta;
mod pod;
pub mod predecessor;
pub mod sandbox;
mod secrets;
mod template;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ApiResource;

pub use auth::DEX_IMAGE;
pub use child::Child;
pub use error::ServiceError;
pub use jumphost::{JUMP_HOST_IMAGE, host_key_secret_name};
pub use loadbalancer::{
    CONTROL_PLANE_TEMPLATE, CONTROL_PLANE_TEMPLATE_KEY, HAPROXY_IMAGE, WORKER_TEMPLATE,
    WORKER_TEMPLATE_KEY,
};
pub use template::Renderer;

use crate::api::{HostRecord, NodeRole, SIPClusterSpec};
use crate::extraction::BmcCredentials;
use crate::scheduling::HostKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    LoadBalancerControlPlane,
    LoadBalancerWorker,
    JumpHost,
    Auth,
}

impl ServiceKind {
    /// The spec field listing instances of this service.
    pub fn field(self) -> &'static str {
        match self {
            ServiceKind::LoadBalancerControlPlane => "loadBalancerControlPlane",
            ServiceKind::LoadBalancerWorker => "loadBalancerWorker",
            ServiceKind::JumpHost => "jumpHost",
            ServiceKind::Auth => "auth",
        }
    }

    /// In object names.
    fn short_name(self) -> &'static str {
        match self {
            ServiceKind::LoadBalancerControlPlane => "lb-control-plane",
            ServiceKind::LoadBalancerWorker => "lb-worker",
            ServiceKind::JumpHost => "jump-host",
            ServiceKind::Auth => "oidc",
        }
    }

    /// `app.kubernetes.io/component`.
    fn component(self) -> &'static str {
        match self {
            ServiceKind::LoadBalancerControlPlane => "load-balancer-control-plane",
            ServiceKind::LoadBalancerWorker => "load-balancer-worker",
            ServiceKind::JumpHost => "jump-host",
            ServiceKind::Auth => "oidc",
        }
    }

    /// `app.kubernetes.io/name`: the software.
    fn app(self) -> &'static str {
        match self {
            ServiceKind::LoadBalancerControlPlane | ServiceKind::LoadBalancerWorker => "haproxy",
            ServiceKind::JumpHost => "jump-host",
            ServiceKind::Auth => "dex",
        }
    }
}

/// One instance of a service: its list in the spec and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId {
    pub kind: ServiceKind,
    pub index: usize,
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.kind.field(), self.index)
    }
}

/// Everything rendering reads, gathered by the controller beforehand.
pub struct Facts<'a> {
    pub cluster_name: &'a str,
    pub namespace: &'a str,
    pub spec: &'a SIPClusterSpec,
    /// The SIPCluster as controller owner of every child.
    pub owner: OwnerReference,
    /// The host ledger; only its members are served.
    pub hosts: &'a [HostRecord],
    /// The Secrets of [`referenced_secrets`] that exist, by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The template ConfigMaps of [`TEMPLATE_CONFIG_MAPS`] that exist, by name.
    pub config_maps: &'a BTreeMap<String, ConfigMap>,
    /// BMC credentials per member host, read only when a jump host needs them.
    pub credentials: &'a BTreeMap<HostKey, Result<BmcCredentials, String>>,
    /// The jump hosts' host key Secrets that exist, by name (`jumphost::host_key_secret_name`).
    pub host_keys: &'a BTreeMap<String, Secret>,
    /// Where the templates of [`TEMPLATE_CONFIG_MAPS`] render.
    pub renderer: &'a Renderer,
}

impl Facts<'_> {
    /// The shared identity of the objects of service instance `id`, named `name`.
    fn instance<'a>(&'a self, id: ServiceId, name: &'a str) -> meta::Instance<'a> {
        meta::Instance::new(self.cluster_name, self.namespace, &self.owner, id, name)
    }
}

/// What one service instance rendered to.
#[derive(Debug)]
pub struct Rendered {
    pub id: ServiceId,
    /// The base name of its objects.
    pub name: String,
    pub objects: Result<Vec<Child>, ServiceError>,
}

/// The ConfigMaps (in the SIPCluster's namespace) that override the load balancer templates,
/// named as the predecessor named them.
pub const TEMPLATE_CONFIG_MAPS: [&str; 2] = [
    loadbalancer::CONTROL_PLANE_CONFIG_MAP,
    loadbalancer::WORKER_CONFIG_MAP,
];

/// Whether the spec renders from [`TEMPLATE_CONFIG_MAPS`]: it has a load balancer.
pub fn uses_templates(spec: &SIPClusterSpec) -> bool {
    let s = &spec.services;
    !s.load_balancer_control_plane.is_empty() || !s.load_balancer_worker.is_empty()
}

/// The objects an instance of `kind` named `name` renders, as `(resource, name)`, known
/// without rendering it: what is read ahead for the check that no one else's object holds
/// those names. (An Auth instance without Kubernetes storage renders no ServiceAccount; reading
/// under that name too costs a read, nothing else.)
pub fn object_names(kind: ServiceKind, name: &str) -> Vec<(ApiResource, String)> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Service, ServiceAccount};
    let secret = ApiResource::erase::<Secret>(&());
    let own = |resource: ApiResource| (resource, name.to_string());
    let mut objects = match kind {
        ServiceKind::LoadBalancerControlPlane | ServiceKind::LoadBalancerWorker => vec![],
        ServiceKind::JumpHost => vec![own(ApiResource::erase::<ConfigMap>(&()))],
        ServiceKind::Auth => vec![own(ApiResource::erase::<ServiceAccount>(&()))],
    };
    objects.push(own(secret.clone()));
    if kind == ServiceKind::JumpHost {
        objects.push((secret, host_key_secret_name(name)));
    }
    objects.push(own(ApiResource::erase::<Service>(&())));
    objects.push(own(ApiResource::erase::<Deployment>(&())));
    objects
}

/// Every service instance of the spec, in apply order.
pub fn instances(spec: &SIPClusterSpec) -> Vec<ServiceId> {
    let s = &spec.services;
    [
        (
            ServiceKind::LoadBalancerControlPlane,
            s.load_balancer_control_plane.len(),
        ),
        (
            ServiceKind::LoadBalancerWorker,
            s.load_balancer_worker.len(),
        ),
        (ServiceKind::JumpHost, s.jump_host.len()),
        (ServiceKind::Auth, s.auth.len()),
    ]
    .into_iter()
    .flat_map(|(kind, n)| (0..n).map(move |index| ServiceId { kind, index }))
    .collect()
}

/// The Secrets in the SIPCluster's namespace that the services read.
pub fn referenced_secrets(spec: &SIPClusterSpec) -> BTreeSet<String> {
    let s = &spec.services;
    s.jump_host
        .iter()
        .map(|j| j.node_ssh_private_keys.clone())
        .chain(s.auth.iter().map(|a| a.config_secret.clone()))
        .chain(s.auth.iter().filter_map(|a| a.tls_secret.clone()))
        .collect()
}

/// Whether any service needs the hosts' BMC credentials (the jump host's host list).
pub fn needs_credentials(spec: &SIPClusterSpec) -> bool {
    !spec.services.jump_host.is_empty()
}

/// Renders every service instance of the spec, in the spec's order. Instances fail
/// independently, and render at once, each on a thread of its own: a user's template renders
/// in a child process (`sandbox.rs`), and the two balancers' children then run side by side
/// rather than one after the other (a few milliseconds of every new cluster's path).
pub fn render(facts: &Facts<'_>) -> Vec<Rendered> {
    std::thread::scope(|scope| {
        let rendering: Vec<_> = instances(facts.spec)
            .into_iter()
            .map(|id| scope.spawn(move || render_one(facts, id)))
            .collect();
        rendering
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn render_one(facts: &Facts<'_>, id: ServiceId) -> Rendered {
    let name = meta::object_name(facts.cluster_name, id);
    let objects = match id.kind {
        ServiceKind::LoadBalancerControlPlane => loadbalancer::control_plane(facts, id, &name),
        ServiceKind::LoadBalancerWorker => loadbalancer::worker(facts, id, &name),
        ServiceKind::JumpHost => jumphost::render(facts, id, &name),
        ServiceKind::Auth => auth::render(facts, id, &name),
    };
    Rendered { id, name, objects }
}

/// The ledger's members (optionally of one role), ordered by role then name, so a config does
/// not change when only the ledger's order does.
fn members(hosts: &[HostRecord], role: Option<NodeRole>) -> Vec<&HostRecord> {
    let mut members: Vec<&HostRecord> = hosts
        .iter()
        .filter(|h| h.state.is_member() && role.is_none_or(|r| h.role == r))
        .collect();
    members.sort_by(|a, b| (a.role, &a.namespace, &a.name).cmp(&(b.role, &b.namespace, &b.name)));
    members
}

/// The member's address on `interface`, as Extracting recorded it.
fn address(service: ServiceId, host: &HostRecord, interface: &str) -> Result<IpAddr, ServiceError> {
    host.addresses
        .get(interface)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| ServiceError::NoAddress {
            service,
            host: format!("{}/{}", host.namespace, host.name),
            interface: interface.into(),
        })
}

/// An address ready to be followed by `:port` (IPv6 in brackets).
fn host_part(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

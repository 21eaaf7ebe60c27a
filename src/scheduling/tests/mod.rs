//! Scenario tests: the predecessor's suite, its bugs as regressions, and the documented rules.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::api::{
    HostRecord, HostState, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, NodeCount, NodeRole,
    NodeSet, SIPClusterSpec,
};

pub(crate) const FLAVOR: &str = "vino.airshipit.org/flavor";
pub(super) const RACK: &str = "vino.airshipit.org/rack";
pub(super) const SERVER: &str = "vino.airshipit.org/host";

pub(super) fn cluster() -> ClusterKey {
    ClusterKey::new("tenant", "cluster-a")
}

/// A host builder: `host("cp-1").flavor("cp").rack("r1").build()`.
pub(super) struct HostBuilder(HostView);

pub(super) fn host(name: &str) -> HostBuilder {
    HostBuilder(HostView {
        key: HostKey::new("metal3", name),
        uid: Some(format!("uid-{name}")),
        labels: BTreeMap::new().into(),
        deleting: false,
        paused: false,
        errored: false,
        unhealthy: false,
        release_requested: false,
        has_network_data: true,
        consumer: None,
    })
}

impl HostBuilder {
    pub(super) fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub(super) fn flavor(self, f: &str) -> Self {
        self.label(FLAVOR, f)
    }
    pub(super) fn rack(self, r: &str) -> Self {
        self.label(RACK, r)
    }
    pub(super) fn server(self, s: &str) -> Self {
        self.label(SERVER, s)
    }
    fn labeled_for(self, ns: &str, name: &str) -> Self {
        self.label(LABEL_CLUSTER_NAMESPACE, ns)
            .label(LABEL_CLUSTER_NAME, name)
    }
    fn with(mut self, f: impl FnOnce(&mut HostView)) -> Self {
        f(&mut self.0);
        self
    }
    pub(super) fn build(self) -> HostView {
        self.0
    }
}

pub(crate) fn role(flavor: &str, topology: Option<&str>, active: u32, standby: u32) -> NodeSet {
    NodeSet {
        label_selector: LabelSelector {
            match_labels: Some([(FLAVOR.to_string(), flavor.to_string())].into()),
            match_expressions: None,
        },
        topology_key: topology.map(str::to_string),
        count: Some(NodeCount { active, standby }),
    }
}

pub(crate) fn spec(cp: Option<NodeSet>, worker: Option<NodeSet>) -> SIPClusterSpec {
    let mut nodes = BTreeMap::new();
    if let Some(cp) = cp {
        nodes.insert(NodeRole::ControlPlane, cp);
    }
    if let Some(w) = worker {
        nodes.insert(NodeRole::Worker, w);
    }
    SIPClusterSpec {
        nodes: nodes.into(),
        ..Default::default()
    }
}

/// The predecessor's sample: 1+1 control plane per rack, 1+1 workers per server.
fn sample_spec() -> SIPClusterSpec {
    spec(
        Some(role("cp", Some(RACK), 1, 1)),
        Some(role("worker", Some(SERVER), 1, 1)),
    )
}

/// 4 racks with a control-plane host each, 6 workers on 5 servers.
fn sample_pool() -> Vec<HostView> {
    let mut hosts: Vec<HostView> = (1..=4)
        .map(|i| {
            host(&format!("cp-{i}"))
                .flavor("cp")
                .rack(&format!("r{i}"))
                .build()
        })
        .collect();
    for (i, server) in [
        (1, "s1"),
        (2, "s2"),
        (3, "s3"),
        (4, "s4"),
        (5, "s5"),
        (6, "s5"),
    ] {
        hosts.push(
            host(&format!("wk-{i}"))
                .flavor("worker")
                .server(server)
                .build(),
        );
    }
    hosts
}

pub(super) fn run(spec: &SIPClusterSpec, ledger: &[HostRecord], hosts: &[HostView]) -> Decision {
    run_with_claims(spec, ledger, hosts, &HashSet::new())
}

fn run_with_claims(
    spec: &SIPClusterSpec,
    ledger: &[HostRecord],
    hosts: &[HostView],
    claimed: &HashSet<HostKey>,
) -> Decision {
    run_in(spec, ledger, hosts, (claimed, None))
}

/// [`run`] for a cluster that may claim only hosts of `claimable`'s namespaces.
pub(super) fn run_scoped(
    spec: &SIPClusterSpec,
    ledger: &[HostRecord],
    hosts: &[HostView],
    claimable: &std::collections::BTreeSet<String>,
) -> Decision {
    run_in(spec, ledger, hosts, (&HashSet::new(), Some(claimable)))
}

fn run_in(
    spec: &SIPClusterSpec,
    ledger: &[HostRecord],
    hosts: &[HostView],
    (claimed, claimable): (
        &HashSet<HostKey>,
        Option<&std::collections::BTreeSet<String>>,
    ),
) -> Decision {
    schedule(&Inputs {
        cluster: &cluster(),
        spec,
        ledger,
        hosts,
        claimed_elsewhere: claimed,
        claimable,
    })
}

fn added(d: &Decision, role: NodeRole) -> Vec<String> {
    d.roles[&role]
        .add
        .iter()
        .map(|p| p.key.name().to_string())
        .collect()
}

fn released(d: &Decision, role: NodeRole) -> Vec<(String, ReleaseReason)> {
    d.roles[&role]
        .release
        .iter()
        .map(|r| (r.key.name().to_string(), r.reason))
        .collect()
}

/// A ledger record for a member, as Gathering would have written it.
fn member(name: &str, role: NodeRole, state: HostState) -> HostRecord {
    HostRecord {
        name: name.into(),
        namespace: "metal3".into(),
        uid: Some(format!("uid-{name}")),
        role,
        state,
        reason: None,
        topology_domain: None,
        addresses: BTreeMap::new(),
        bmc_address: None,
    }
}

use NodeRole::{ControlPlane as CP, Worker as W};

mod choosing;
mod ordering;
mod resizing;
mod shortfalls;

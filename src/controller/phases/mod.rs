//! The work of each phase, one file each, on a working copy of the status ([`Turn`]). Each
//! phase's work returns what it found as a [`Step`]: a machine event with a reason for the
//! story, or a block. The phases' shared readers are here; the I/O helpers in `io.rs` and
//! `apply.rs`.

mod apply;
mod confirming;
mod decommissioning;
mod deploying;
mod extracting;
mod gathering;
mod io;
mod labeling;
mod predecessor;
mod prefetch;
mod ready;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, ApiResource};
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::sources::SourceRef;
use super::step::Step;
use crate::api::{BareMetalHost, SIPCluster, SIPClusterStatus};
use crate::scheduling::{ClusterKey, HostKey, HostView, Inputs, schedule};

pub struct Turn<'a> {
    pub ctx: &'a Context,
    pub cluster: &'a SIPCluster,
    pub key: ClusterKey,
    pub status: SIPClusterStatus,
    /// What this turn read or wrote, so one turn that walks several phases reads each object
    /// once: Secrets by `(namespace, name)`, and the versions of sources and of the services'
    /// Secrets. Never kept past the turn, so never stale.
    seen: Mutex<Seen>,
    /// Set by the Ready check: what it did (read everything, or trusted the memory).
    pub verified: Option<crate::controller::verified::Check>,
    /// The version of the cluster that holds its ledger's unconfirmed claims, once written
    /// (`confirming.rs`).
    pub claims_version: Option<String>,
    /// The count of events that concerned the cluster (`touched.rs`) before this turn read
    /// anything. A hold or a Ready memory is keyed to it, not to the count when the turn ends:
    /// an event that arrives while the turn works (a host created after the turn read the
    /// cache) must let the cluster through, and its wake runs only after this turn.
    pub touched: u64,
}

/// What a turn on a cluster seen for the first time read while its finalizer was being added
/// (every SIPCluster, when the ledgers' cache could not serve, and the Secrets its first phases
/// read), handed to the turn that follows.
#[derive(Default)]
pub struct Prefetched(Seen);

#[derive(Default)]
struct Seen {
    secrets: HashMap<(String, String), Option<Secret>>,
    /// What holds the names of the services' objects, by `(kind, name)`, until the turn
    /// writes under that name.
    names: HashMap<(String, String), Option<ObjectMeta>>,
    versions: HashMap<SourceRef, Option<String>>,
    ledgers: Option<Vec<SIPCluster>>,
}

impl<'a> Turn<'a> {
    /// A turn on `cluster`, starting from its persisted status, at the phase its history
    /// replays to.
    pub fn new(ctx: &'a Context, cluster: &'a SIPCluster) -> Self {
        Turn {
            ctx,
            cluster,
            key: ClusterKey::new(
                cluster.metadata.namespace.clone().unwrap_or_default(),
                cluster.metadata.name.clone().unwrap_or_default(),
            ),
            status: super::history::resumed(cluster.status.clone().unwrap_or_default()),
            seen: Mutex::default(),
            verified: None,
            claims_version: None,
            touched: ctx.touched.of(cluster),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        crate::sync::lock(&self.seen)
    }

    /// The Secret `reference` names (`None`: no reference, or no Secret), read once a turn.
    async fn secret(&self, reference: Option<(String, String)>) -> kube::Result<Option<Secret>> {
        let Some(reference) = reference else {
            return Ok(None);
        };
        if let Some(known) = self.seen().secrets.get(&reference) {
            return Ok(known.clone());
        }
        let (namespace, name) = &reference;
        let read = self.ctx.reads.secret(namespace, name).await?;
        let mut seen = self.seen();
        seen.versions.insert(
            SourceRef::secret(namespace, name),
            read.as_ref()
                .and_then(|s| s.metadata.resource_version.clone()),
        );
        seen.secrets.insert(reference, read.clone());
        Ok(read)
    }

    /// The metadata of what holds `name` for `resource` in the cluster's namespace (`None`:
    /// nothing), read once a turn until the turn writes there.
    async fn object_metadata(
        &self,
        resource: &ApiResource,
        name: &str,
    ) -> kube::Result<Option<ObjectMeta>> {
        let key = (resource.kind.clone(), name.to_string());
        if let Some(known) = self.known_name(&key) {
            return Ok(known);
        }
        let reads = &self.ctx.reads;
        let read = reads
            .object_metadata(resource, &self.key.namespace, name)
            .await?;
        self.seen().names.insert(key, read.clone());
        Ok(read)
    }

    /// What this turn read under `(kind, name)`: its metadata, or a Secret read whole.
    fn known_name(&self, key: &(String, String)) -> Option<Option<ObjectMeta>> {
        let seen = self.seen();
        if let Some(known) = seen.names.get(key) {
            return Some(known.clone());
        }
        let (kind, name) = key;
        let whole = seen
            .secrets
            .get(&(self.key.namespace.clone(), name.clone()))
            .filter(|_| kind == "Secret")?;
        Some(whole.as_ref().map(|s| s.metadata.clone()))
    }

    /// Forgets what was read under `name` (a Secret read whole too): this turn just wrote
    /// there, and a later read in the turn must see that write.
    fn forget_name(&self, kind: &str, name: &str) {
        let mut seen = self.seen();
        seen.names.remove(&(kind.to_string(), name.to_string()));
        if kind == "Secret" {
            seen.secrets
                .remove(&(self.key.namespace.clone(), name.to_string()));
        }
    }

    /// Records the version of an object this turn read or wrote.
    fn saw(&self, source: SourceRef, version: Option<String>) {
        self.seen().versions.insert(source, version);
    }

    /// The version this turn read or wrote of `source`, if it did.
    fn seen_version(&self, source: &SourceRef) -> Option<Option<String>> {
        self.seen().versions.get(source).cloned()
    }

    /// The scheduler's view of each cached host, sharing the cache's labels. Built afresh at
    /// every decision: keeping them between turns saved nothing measurable at 1,000 hosts
    /// (ARCHITECTURE.md, "What the controller remembers").
    fn hosts_snapshot(&self) -> Vec<Arc<HostView>> {
        let hosts = self.ctx.hosts.state();
        hosts
            .iter()
            .map(|h| Arc::new(HostView::of_cached(h)))
            .collect()
    }

    /// Hosts in other SIPClusters' ledgers. To choose hosts (`fresh`) every claim the operator
    /// has written must be seen, a moment ago by the previous turn included: the ledgers'
    /// cache serves once the watch has brought all of them back (`ledgers.rs`), else they are
    /// listed from the API server. To check members the cache serves as it is: no one takes a
    /// host in this ledger, since every cluster sees every claim before choosing. At
    /// worst a stale cache shows a member still in a ledger that released it; the regather
    /// that follows reads fresh and keeps it.
    async fn claims_elsewhere(&self, fresh: bool) -> kube::Result<HashSet<HostKey>> {
        let prefetched = if fresh {
            self.seen().ledgers.take()
        } else {
            None
        };
        if let Some(read) = prefetched {
            return Ok(self.claims_in(read.iter()));
        }
        if fresh && !self.ctx.ledgers.caught_up_but(&self.key) {
            tracing::debug!("the ledgers' watch lags the operator's writes: listing them");
            let read = self.ctx.reads.clusters().await?;
            return Ok(self.claims_in(read.iter()));
        }
        let cached = self.ctx.ledgers.store.state();
        Ok(self.claims_in(cached.iter().map(|c| &**c)))
    }

    /// The hosts that the ledgers of `clusters` other than this one claim.
    fn claims_in<'c>(&self, clusters: impl Iterator<Item = &'c SIPCluster>) -> HashSet<HostKey> {
        crate::scheduling::claims_of_others(clusters, &self.key)
            .map(|(record, _)| HostKey::of_record(record))
            .collect()
    }

    /// What was read for this turn before it began ([`Prefetched::read`]): as fresh as a read
    /// made later in the turn, since no other cluster's turn runs in between. Its ledgers
    /// serve the turn's first fresh read of the ledgers only; a second is like any other.
    pub fn with_prefetched(self, prefetched: Prefetched) -> Self {
        *self.seen() = prefetched.0;
        self
    }

    /// The decision on the current snapshot, without acting on it; `fresh`: see
    /// [`Turn::claims_elsewhere`].
    async fn decide(&self, fresh: bool) -> kube::Result<crate::scheduling::Decision> {
        let started = std::time::Instant::now();
        let hosts = self.hosts_snapshot();
        let viewed = started.elapsed();
        let claimed = self.claims_elsewhere(fresh).await?;
        let listed = started.elapsed();
        let claimable = self.ctx.claim_scope.for_namespace(&self.key.namespace);
        let decision = schedule(&Inputs {
            cluster: &self.key,
            spec: &self.cluster.spec,
            ledger: &self.status.hosts,
            hosts: &hosts,
            claimed_elsewhere: &claimed,
            claimable: claimable.as_ref(),
        });
        tracing::debug!(
            hosts = hosts.len(),
            viewed = ?viewed,
            claims_read = ?(listed - viewed),
            decided = ?(started.elapsed() - listed),
            "scheduled"
        );
        Ok(decision)
    }

    fn hosts_api(&self, namespace: &str) -> Api<BareMetalHost> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    fn namespaced<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.key.namespace)
    }

    /// The members as the cache holds them (`None`: gone from it).
    fn members(&self) -> Vec<(HostKey, Option<Arc<BareMetalHost>>)> {
        self.status
            .hosts
            .iter()
            .filter(|h| h.state.is_member())
            .map(|record| {
                let key = HostKey::of_record(record);
                let host = self
                    .ctx
                    .hosts
                    .get(&ObjectRef::new(key.name()).within(key.namespace()));
                (key, host)
            })
            .collect()
    }

    /// The work of the phase the cluster is in; none while the spec holds what the schema now
    /// refuses (an object stored under the predecessor's looser schema).
    pub async fn work(&mut self, phase: crate::api::Phase) -> kube::Result<Option<Step>> {
        use crate::api::Phase;
        let problems = crate::api::legacy::problems(&self.cluster.spec);
        if !problems.is_empty() && phase != Phase::Decommissioning {
            return Ok(Some(Step::blocked(
                super::conditions::reason::INVALID_SPEC,
                "InvalidSpec",
                problems.join("; "),
            )));
        }
        Ok(Some(match phase {
            Phase::Gathering => self.gather().await?,
            Phase::Extracting => self.extract().await?,
            Phase::DeployingInfra => self.deploy().await?,
            Phase::Labeling => self.label().await?,
            Phase::Ready => self.check().await?,
            // Decommissioning is worked by the finalizer's cleanup.
            Phase::Decommissioning => return Ok(None),
        }))
    }
}

/// A ledger entry for the phases' unit tests: a worker in `metal3`.
#[cfg(test)]
pub(in crate::controller) fn test_record(
    name: &str,
    state: crate::api::HostState,
) -> crate::api::HostRecord {
    crate::api::HostRecord {
        name: name.into(),
        namespace: "metal3".into(),
        uid: None,
        role: crate::api::NodeRole::Worker,
        state,
        reason: None,
        topology_domain: None,
        addresses: Default::default(),
        bmc_address: None,
    }
}

/// What a turn reads for the DeployingInfra of [`test_cluster`]'s services, in its Extracting
/// round: the Secret the spec names, the jump host's key, and what holds each new instance's
/// names.
#[cfg(test)]
const READ_FOR_THE_SERVICES: [&str; 12] = [
    "Secret sip/keys",
    "Secret sip/tenant-a-jump-host-host-key",
    "Secret metadata sip/tenant-a-lb-control-plane",
    "Service metadata sip/tenant-a-lb-control-plane",
    "Deployment metadata sip/tenant-a-lb-control-plane",
    "Secret metadata sip/tenant-a-lb-worker",
    "Service metadata sip/tenant-a-lb-worker",
    "Deployment metadata sip/tenant-a-lb-worker",
    "ConfigMap metadata sip/tenant-a-jump-host",
    "Secret metadata sip/tenant-a-jump-host",
    "Service metadata sip/tenant-a-jump-host",
    "Deployment metadata sip/tenant-a-jump-host",
];

/// A cluster for the phases' unit tests: `tenant-a` in `sip`, services on `oam-ipv4`, whose
/// ledger holds `cp-1` in `state`.
#[cfg(test)]
fn test_cluster(state: crate::api::HostState) -> SIPCluster {
    let mut c = SIPCluster::new(
        "tenant-a",
        crate::api::SIPClusterSpec {
            services: crate::extraction::tests::services("oam-ipv4", "oam-ipv4"),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("sip".into());
    c.status = Some(SIPClusterStatus {
        hosts: vec![test_record("cp-1", state)],
        ..Default::default()
    });
    c
}

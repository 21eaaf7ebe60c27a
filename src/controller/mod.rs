//! The serial controller: one SIPCluster at a time, each turn resuming from the phase in its
//! status. The route of one event through these files:
//!
//! 1. `watches.rs` (hosts: `host_watch.rs`): a watch event (the SIPCluster's own, a host's,
//!    drift of a service object) updates a cache and wakes the cluster it concerns;
//! 2. `reconcile.rs`: the controller hands the cluster to `reconcile` (`sweep.rs` first drops
//!    what the memories hold of clusters gone from the cache; then the finalizer), which
//!    reads it fresh and, unless `backoff.rs` holds it, walks it through its phases;
//! 3. `step.rs`: an outside event first (first sight, spec change, deletion), else
//! 4. `phases/`: the work of the phase it is in, one file per phase, which says what it found;
//! 5. `commit.rs`: the machine (`crate::machine`) decides the next phase, and the transition
//!    is recorded: history, condition, one guarded status write, then metrics and the Event
//!    (`announce.rs`).
//!
//! Around them: `relevance.rs` (which host events matter), `hosts.rs` (guarded label patches),
//! `drift/` and `relist.rs` (what the operator wrote of the services' objects, and what others
//! changed), `sources.rs` (versions of what the services are rendered from), `ledgers.rs` (every cluster's claims, and when that cache can stand
//! in for a fresh read), `confirmations.rs` (a claim checked against the claims written
//! before it, when other operators share the pool), `verified.rs` (the Ready check's memory between turns), `own_writes.rs` (the versions
//! of the operator's last writes to each SIPCluster), `reads.rs` (what the phases read, behind
//! an interface their unit tests fill), `templates.rs` (the template ConfigMaps' watch), `touched.rs` (the events that concerned each cluster),
//! `history.rs` and `conditions.rs` (the status records).

// Issue 30: no function of the controller over 80 lines (clippy.toml sets the bound).
#![warn(clippy::too_many_lines)]

mod announce;
mod availability;
mod backoff;
mod commit;
pub mod conditions;
mod confirmations;
mod drift;
mod error;
pub mod history;
mod host_watch;
mod hosts;
mod ledgers;
mod own_writes;
mod per_cluster;
mod phases;
mod reads;
mod reconcile;
mod relevance;
mod relist;
mod sources;
mod step;
mod sweep;
mod templates;
#[cfg(test)]
mod testing;
mod touched;
mod verified;
mod watches;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;

use backoff::Backoff;
use drift::Drift;
pub use error::Error;

use crate::api::{BareMetalHost, SIPCluster};
use crate::metrics::Metrics;

/// Field manager and event reporter name.
pub const MANAGER: &str = "sip-operator";
/// How long the operator waits for its caches before it gives up (and its pod restarts, with
/// the reason in its log and, until then, in `/readyz`).
const CACHE_SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

pub struct Context {
    pub client: kube::Client,
    /// What the phases read (the client, but for the phases' unit tests).
    reads: Arc<dyn reads::Reads>,
    pub recorder: Recorder,
    /// Every BareMetalHost the operator may use.
    pub hosts: Store<BareMetalHost>,
    /// The SIPClusters the operator serves (the controller's own cache).
    clusters: Store<SIPCluster>,
    /// Every SIPCluster's ledger, in any namespace, for Gathering.
    ledgers: Arc<ledgers::Ledgers>,
    /// The predecessor's Deployments (metadata), which the services replace.
    predecessors: Store<PartialObjectMeta<Deployment>>,
    /// The services' Deployments (status), for the ServicesAvailable condition.
    deployments: Store<Deployment>,
    pub metrics: Arc<Metrics>,
    /// Failure counts and holds of clusters that cannot progress.
    backoff: Backoff,
    /// Events of the BareMetalHosts and the template ConfigMaps, counted for each cluster
    /// they concern.
    touched: Arc<touched::Touched>,
    /// What the operator wrote of the services' objects, and what others changed.
    pub drift: Arc<Drift>,
    /// What the last Ready checks found, so the turn after the operator's own status write
    /// reads nothing again.
    verified: verified::Verified,
    /// The versions of the operator's last writes to each SIPCluster.
    own_writes: own_writes::OwnWrites,
    /// Follow networkData references into other namespaces than the host's.
    network_data_any_namespace: bool,
    /// Where templates from ConfigMaps render.
    renderer: crate::services::Renderer,
    /// Cancels turns after writes (the cancellation tests; `None` otherwise).
    cancel: Option<Arc<crate::failpoint::Cancel>>,
    /// Holds a write before it is sent (the conflict and outage tests; `None` otherwise).
    pause: Option<Arc<crate::failpoint::Pause>>,
    /// How long one turn may take before it is dropped.
    turn_limit: std::time::Duration,
    /// Which namespaces' hosts each SIPCluster namespace may claim.
    claim_scope: crate::scheduling::ClaimScope,
}

impl Context {
    /// Who writes to hosts: this controller's field manager and cancellation point.
    pub fn writer(&self) -> hosts::Writer<'_> {
        hosts::Writer {
            cancel: self.cancel.as_deref(),
            pause: self.pause.as_deref(),
        }
    }

    async fn publish(&self, cluster: &SIPCluster, type_: EventType, reason: &str, note: String) {
        let event = announce::event(type_, reason, note);
        announce::publish(&self.recorder, &event, &cluster.object_ref(&())).await;
    }
}

/// What the operator watches and how.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the controller records its metrics (shared with the admin server).
    pub metrics: Arc<Metrics>,
    /// Watch hosts in this namespace only (all when `None`).
    pub host_namespace: Option<String>,
    /// Serve SIPClusters in this namespace only (all when `None`).
    pub cluster_namespace: Option<String>,
    /// Reporter instance in Events (the pod name).
    pub instance: Option<String>,
    /// Read a host's networkData Secret even outside the host's namespace (off by default: a
    /// BareMetalHost editor could otherwise have the operator read any Secret).
    pub network_data_any_namespace: bool,
    /// Where templates from ConfigMaps render: `sip run` uses a child of its own executable.
    pub renderer: crate::services::Renderer,
    /// Which namespaces' hosts each SIPCluster namespace may claim (`--claimable-hosts`).
    pub claim_scope: crate::scheduling::ClaimScope,
    /// Cancels turns right after writes: for the tests that prove no memory misses a write.
    pub cancel: Option<Arc<crate::failpoint::Cancel>>,
    /// Holds the first write at a site before it is sent, until the test releases it: for the
    /// tests that prove the resourceVersion guards meet a real 409.
    pub pause: Option<Arc<crate::failpoint::Pause>>,
    /// Delays every event of the ledgers' watch (when it is separate from the controller's):
    /// for the tests that must meet a watch lagging behind the operator's own writes.
    pub ledger_lag: Option<std::time::Duration>,
    /// How long one turn may take before it is dropped (`sip run`: [`TURN_LIMIT`]).
    pub turn_limit: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            metrics: Default::default(),
            host_namespace: None,
            cluster_namespace: None,
            instance: None,
            network_data_any_namespace: false,
            renderer: Default::default(),
            claim_scope: Default::default(),
            cancel: None,
            pause: None,
            ledger_lag: None,
            turn_limit: TURN_LIMIT,
        }
    }
}

/// How long one turn may take: a request stuck on the network must not hold every other
/// SIPCluster behind it.
pub const TURN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The API for `K` in `namespace`, or in every namespace when the operator is not scoped.
fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let watches = watches::start(&client, &settings);
    let (hosts, cluster_store) = (watches.hosts.clone(), watches.clusters.clone());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: settings.instance.clone(),
            },
        ),
        reads: Arc::new(reads::Served {
            client: client.clone(),
            templates: watches.templates.clone(),
        }),
        client,
        hosts: hosts.clone(),
        clusters: cluster_store.clone(),
        ledgers: watches.ledgers.clone(),
        predecessors: watches.predecessors.clone(),
        deployments: watches.deployments.clone(),
        metrics: settings.metrics.clone(),
        backoff: Backoff::default(),
        touched: watches.touched.clone(),
        drift: watches.drift.clone(),
        verified: verified::Verified::default(),
        own_writes: Default::default(),
        network_data_any_namespace: settings.network_data_any_namespace,
        renderer: settings.renderer.clone(),
        claim_scope: settings.claim_scope.clone(),
        cancel: settings.cancel.clone(),
        pause: settings.pause.clone(),
        turn_limit: settings.turn_limit,
    });
    settings.metrics.watch(cluster_store.clone(), hosts.clone());
    let started = std::time::Instant::now();
    if !synced(&watches, &settings.metrics).await {
        return;
    }
    // The watches end with the controller (a replica that loses the lease stops them all).
    let _tasks = watches.tasks;
    // A service object deleted while the operator was down is found missing by the first
    // Ready check only once the watches have listed what exists.
    ctx.drift.until_listed(&drift::EVERY_SERVICE_HAS).await;
    tracing::info!(
        hosts = hosts.len(),
        clusters = cluster_store.len(),
        elapsed = ?started.elapsed(),
        "caches synced: working"
    );
    settings.metrics.set_leader(true);
    settings.metrics.set_ready(true);
    settings.metrics.set_working(true);

    Controller::for_shared_stream(watches.cluster_events, cluster_store)
        .with_config(ControllerConfig::default().concurrency(1))
        .reconcile_on(watches.woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile round");
            }
        })
        .await;
    settings.metrics.set_working(false);
}

/// Waits for every cache to list what exists; false (the operator gives up, said in its
/// metrics) when a watch is gone or the caches take longer than `CACHE_SYNC_LIMIT`.
async fn synced(watches: &watches::Watches, metrics: &Metrics) -> bool {
    let synced = async {
        watches.hosts.wait_until_ready().await.is_ok()
            && watches.clusters.wait_until_ready().await.is_ok()
            && watches.ledgers.store.wait_until_ready().await.is_ok()
            && watches.predecessors.wait_until_ready().await.is_ok()
            && watches.deployments.wait_until_ready().await.is_ok()
            && watches.templates.wait_until_ready().await
    };
    match tokio::time::timeout(CACHE_SYNC_LIMIT, synced).await {
        Ok(true) => true,
        Ok(false) => {
            metrics.give_up("the caches' writers are gone".into());
            false
        }
        Err(_) => {
            let trouble = metrics.watches.trouble().join("; ");
            tracing::error!(%trouble, limit = ?CACHE_SYNC_LIMIT, "the caches did not sync; stopping");
            metrics.give_up(format!(
                "the caches did not sync within {CACHE_SYNC_LIMIT:?}: {trouble}"
            ));
            false
        }
    }
}

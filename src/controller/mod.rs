//! The serial controller: one SIPCluster at a time, each reconcile resuming from the phase in
//! its status. The machine decides; this module does the I/O around it and records every
//! transition (status write first, then the Event) so `kubectl describe` tells the story.

mod announce;
pub mod conditions;
mod drift;
mod error;
pub mod history;
mod hosts;
mod infra;
mod phases;
mod relist;
mod sources;
mod views;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use announce::Announcer;
use drift::Drift;
pub use error::Error;
use phases::{Step, Turn, backoff};

use crate::api::{BareMetalHost, FINALIZER, Phase, SIPCluster, SIPClusterStatus};
use crate::failpoint;
use crate::machine::{self, Event};
use crate::metrics::Metrics;
use crate::scheduling::HostView;
use crate::services;

/// Field manager and event reporter name.
pub const MANAGER: &str = "sip-operator";
/// Phases one reconcile may walk through before yielding to other clusters.
const MAX_STEPS: usize = 8;
/// A turn that takes longer is abandoned (its writes so far are all guarded and persisted), so
/// one stuck call cannot starve the other clusters.
const TURN_LIMIT: Duration = Duration::from_secs(30);
/// SIPCluster events the controller may lag behind before the cache's watch waits for it.
const CLUSTER_EVENTS: usize = 1024;
/// How often a Ready cluster is checked even without events.
const READY_RESYNC: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub manager: String,
    /// Every BareMetalHost the operator may use.
    pub hosts: Store<BareMetalHost>,
    /// Every SIPCluster the controller watches (may lag behind the API server).
    pub clusters: Store<SIPCluster>,
    pub metrics: Arc<Metrics>,
    /// Consecutive blocked turns per cluster, for the backoff.
    attempts: Mutex<HashMap<ObjectRef<SIPCluster>, u32>>,
    /// Blocked clusters: not before this instant, unless the spec (generation) changes. A
    /// blocked turn's own status write is a watch event; without this it would retry at once,
    /// bypassing the backoff and starving the other clusters.
    blocked: Mutex<HashMap<ObjectRef<SIPCluster>, Blocked>>,
    /// Counts BareMetalHost events.
    host_epoch: Arc<AtomicU64>,
    /// What the operator wrote of the services' objects, and what others changed.
    pub drift: Arc<Drift>,
    /// The scheduler's views of the cached hosts.
    views: Mutex<views::HostViews>,
}

/// When a blocked cluster may try again, and what it was blocked at: a new spec generation or
/// any host change since lets it try at once (a freed host may be what it waits for).
struct Blocked {
    until: std::time::Instant,
    generation: Option<i64>,
    host_epoch: u64,
}

/// What the operator watches and how.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Where the controller records its metrics (shared with the admin server).
    pub metrics: Arc<Metrics>,
    /// Watch hosts in this namespace only (all when `None`).
    pub host_namespace: Option<String>,
    /// Serve SIPClusters in this namespace only (all when `None`).
    pub cluster_namespace: Option<String>,
    /// Reporter instance in Events (the pod name).
    pub instance: Option<String>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let hosts_api: Api<BareMetalHost> = match &settings.host_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let clusters: Api<SIPCluster> = match &settings.cluster_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // The SIPCluster cache is driven by a task of its own, not by the controller, so the
    // operator can wait for both caches before it starts working: kube's store readiness wakes
    // only one waiter, and the controller is one.
    let (cluster_store, cluster_writer) = reflector::store_shared(CLUSTER_EVENTS);
    let cluster_events = cluster_writer
        .subscribe()
        .expect("a shared store hands out subscriptions");
    let cluster_cache = watcher(clusters, watcher::Config::default())
        .default_backoff()
        .reflect_shared(cluster_writer)
        .for_each(|event| {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watching SIPClusters");
            }
            std::future::ready(())
        });
    // Host events and drift wake clusters through this channel: one watch per kind, whose
    // events first update the cache the reconciler reads, then wake whom they concern.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let host_epoch = Arc::new(AtomicU64::new(0));
    let drift = Arc::new(Drift::default());

    let (hosts, writer) = reflector::store();
    let host_events = {
        let (clusters, epoch, wake) = (cluster_store.clone(), host_epoch.clone(), wake.clone());
        reflector(
            writer,
            watcher(hosts_api, watcher::Config::default())
                .modify(slim)
                .default_backoff(),
        )
        .touched_objects()
        .for_each(move |host| {
            if let Ok(host) = host {
                epoch.fetch_add(1, Ordering::Relaxed);
                for cluster in clusters_for_host(&clusters, &host) {
                    let _ = wake.unbounded_send(cluster);
                }
            }
            std::future::ready(())
        })
    };
    let ns = settings.cluster_namespace.as_deref();
    // The watches end with the controller (a replica that loses the lease stops them all).
    let _watches = Tasks(vec![
        tokio::spawn(cluster_cache),
        tokio::spawn(host_events),
        tokio::spawn(watch_children::<Deployment>(&client, ns, &drift, &wake)),
        tokio::spawn(watch_children::<Service>(&client, ns, &drift, &wake)),
        tokio::spawn(watch_children::<ConfigMap>(&client, ns, &drift, &wake)),
        tokio::spawn(watch_children::<ServiceAccount>(&client, ns, &drift, &wake)),
    ]);

    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: settings.instance.clone(),
            },
        ),
        client,
        manager: MANAGER.into(),
        hosts: hosts.clone(),
        clusters: cluster_store.clone(),
        metrics: settings.metrics.clone(),
        attempts: Mutex::default(),
        blocked: Mutex::default(),
        host_epoch,
        drift,
        views: Mutex::default(),
    });
    settings.metrics.watch(cluster_store.clone(), hosts.clone());
    let started = std::time::Instant::now();
    if hosts.wait_until_ready().await.is_err() || cluster_store.wait_until_ready().await.is_err() {
        tracing::error!("the caches never became ready");
        return;
    }
    // A service object deleted while the operator was down is found missing by the first
    // Ready check only once the watches have listed what exists.
    ctx.drift.until_listed(&drift::EVERY_SERVICE_HAS).await;
    // The first Gathering would otherwise build every host's view.
    ctx.views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .snapshot(&hosts.state());
    tracing::info!(
        hosts = hosts.len(),
        clusters = cluster_store.len(),
        elapsed = ?started.elapsed(),
        "caches synced: working"
    );
    settings.metrics.set_leader(true);
    settings.metrics.set_ready(true);
    settings.metrics.set_working(true);

    Controller::for_shared_stream(cluster_events, cluster_store)
        .with_config(ControllerConfig::default().concurrency(1))
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile round");
            }
        })
        .await;
    settings.metrics.set_working(false);
}

/// Background tasks aborted when dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Keeps only what the operator reads of a host: managedFields and kubectl's last-applied
/// annotation can outweigh the rest of the object, times every host watched.
fn slim(host: &mut BareMetalHost) {
    host.metadata.managed_fields = None;
    if let Some(annotations) = host.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Watches the metadata of one kind of the services' objects (those the operator manages, by
/// label) and wakes the SIPCluster whose objects drifted. Secrets are not watched: the
/// operator has no right to list them; the Ready check reads its own Secrets instead.
fn watch_children<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    drift: &Arc<Drift>,
    wake: &futures::channel::mpsc::UnboundedSender<ObjectRef<SIPCluster>>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // Metadata only: what drift is judged by, and a fraction of the objects' size.
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let kind = drift::kind_of::<K>();
    let config = watcher::Config::default().labels(&format!(
        "{}={}",
        services::meta::LABEL_MANAGED_BY,
        services::meta::MANAGED_BY
    ));
    let (drift, wake) = (drift.clone(), wake.clone());
    let mut seen = relist::Seen::default();
    watcher(api, config)
        .default_backoff()
        .for_each(move |event| {
            let changes = match &event {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        drift.listed(kind);
                    }
                    seen.event(event)
                }
                Err(e) => {
                    tracing::debug!(kind, error = %e, "watching the services' objects");
                    Vec::new()
                }
            };
            for (meta, gone) in changes {
                if let Some(cluster) = drift.observe(kind, &meta, gone) {
                    tracing::info!(kind, cluster = %cluster, "a service object drifted");
                    let _ = wake.unbounded_send(cluster);
                }
            }
            std::future::ready(())
        })
}

/// The clusters a host event concerns: the one whose labels or ledger name it, and every
/// cluster still gathering (the host may be what it waits for).
fn clusters_for_host(
    clusters: &Store<SIPCluster>,
    host: &BareMetalHost,
) -> Vec<ObjectRef<SIPCluster>> {
    let view = HostView::from_host(host);
    clusters
        .state()
        .iter()
        .filter(|c| {
            let status = c.status.as_ref();
            let in_ledger = status.is_some_and(|s| {
                s.hosts
                    .iter()
                    .any(|r| r.name == view.key.name() && r.namespace == view.key.namespace())
            });
            let labeled = view.labeled_for().is_some_and(|k| {
                Some(&k.name) == c.metadata.name.as_ref()
                    && Some(&k.namespace) == c.metadata.namespace.as_ref()
            });
            let gathering = status.and_then(|s| s.phase).unwrap_or_default() == Phase::Gathering;
            in_ledger || labeled || gathering
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

#[tracing::instrument(skip_all, fields(
    namespace = cluster.namespace().unwrap_or_default(),
    name = cluster.name_any(),
    phase = cluster.status.as_ref().and_then(|s| s.phase).unwrap_or_default().as_str(),
))]
async fn reconcile(cluster: Arc<SIPCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<SIPCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let turn = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            Finalizer::Apply(c) => apply(&api, &c, &ctx).await,
            Finalizer::Cleanup(c) => cleanup(&api, &c, &ctx).await,
        }
    });
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(TURN_LIMIT, turn).await {
        Err(_) => Err(Error::Timeout(TURN_LIMIT)),
        Ok(result) => result.map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }),
    };
    match &result {
        Ok(_) => ctx.metrics.reconciled("success", None, started.elapsed()),
        Err(e) => ctx
            .metrics
            .reconciled("error", Some(e.label()), started.elapsed()),
    }
    result
}

fn error_policy(cluster: Arc<SIPCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let phase = cluster
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    ctx.metrics.failure(phase, error.label());
    if error.label() == "Conflict" {
        // Someone wrote in between: decide again on fresh data, soon, without backing off.
        tracing::info!(name = %cluster.name_any(), error = %error, "write conflict; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(name = %cluster.name_any(), error = %error, "reconcile failed");
    // Say it where people look: `kubectl describe` shows the Event (repeats are aggregated).
    let note = error.to_string();
    let reason = error.label();
    let (events, target) = (ctx.clone(), cluster.clone());
    tokio::spawn(async move {
        events
            .publish(&target, EventType::Warning, reason, note)
            .await;
    });
    Action::requeue(ctx.bump(&cluster))
}

impl Context {
    fn bump(&self, cluster: &SIPCluster) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(ObjectRef::from_obj(cluster)).or_default();
        *n += 1;
        backoff(*n)
    }

    fn reset(&self, cluster: &SIPCluster) {
        let key = ObjectRef::from_obj(cluster);
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.remove(&key);
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.remove(&key);
    }

    /// Backs a blocked cluster off, returning the delay.
    fn block(&self, cluster: &SIPCluster) -> Duration {
        let delay = self.bump(cluster);
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.insert(
            ObjectRef::from_obj(cluster),
            Blocked {
                until: std::time::Instant::now() + delay,
                generation: cluster.metadata.generation,
                host_epoch: self.host_epoch.load(Ordering::Relaxed),
            },
        );
        delay
    }

    /// How long a blocked cluster must still wait, if neither its spec nor any host changed.
    fn still_blocked(&self, cluster: &SIPCluster) -> Option<Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let b = blocked.get(&ObjectRef::from_obj(cluster))?;
        let now = std::time::Instant::now();
        let unchanged = b.generation == cluster.metadata.generation
            && b.host_epoch == self.host_epoch.load(Ordering::Relaxed);
        (unchanged && b.until > now).then(|| b.until - now)
    }

    async fn publish(&self, cluster: &SIPCluster, type_: EventType, reason: &str, note: String) {
        let event = announce::event(type_, reason, note);
        announce::publish(&self.recorder, &event, &cluster.object_ref(&())).await;
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn apply(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
) -> Result<Action, Error> {
    // The cache may lag behind this operator's own last status write; the phase and ledger
    // must be the latest, so the turn starts from a fresh read of the object.
    let Some(fresh) = api.get_opt(&cluster.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let cluster = &fresh;
    if let Some(wait) = ctx.still_blocked(cluster) {
        return Ok(Action::requeue(wait));
    }
    let mut told = Announcer::new(&ctx.recorder, cluster);
    let result = advance(api, cluster, ctx, &mut told).await;
    told.settle().await;
    result
}

/// Walks the cluster through as many phases as it can go this turn, writing the status at each
/// transition and telling it in an Event.
async fn advance(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
    told: &mut Announcer,
) -> Result<Action, Error> {
    let mut turn = Turn::new(ctx, cluster);
    let mut resource_version = cluster.resource_version();
    let generation = cluster.metadata.generation;

    for _ in 0..MAX_STEPS {
        let step_started = std::time::Instant::now();
        let phase = turn.status.phase.unwrap_or_default();
        let written = turn.status.clone();
        let step = if turn.status.phase.is_none() {
            Step::entered()
        } else if generation != turn.status.observed_generation && phase != Phase::Gathering {
            Step::go(
                Event::Regather,
                "SpecChanged",
                format!("generation {}", generation.unwrap_or_default()),
            )
        } else {
            match phase {
                Phase::Gathering => turn.gather().await?,
                Phase::Extracting => turn.extract().await?,
                Phase::DeployingInfra => turn.deploy().await?,
                Phase::Labeling => turn.label().await?,
                Phase::Ready => turn.check().await?,
                Phase::Decommissioning => return Ok(Action::await_change()),
            }
        };

        tracing::debug!(reason = step.reason, elapsed = ?step_started.elapsed(), "phase work");
        let first_sight = turn.status.phase.is_none();
        let next = match step.event {
            Some(event) => machine::next(phase, event),
            None => phase,
        };
        let at = now();
        if first_sight || next != phase {
            let from = (!first_sight).then_some(phase);
            history::record(
                &mut turn.status,
                from,
                next,
                step.reason,
                &step.message,
                &at,
            );
            turn.status.phase = Some(next);
        }
        if next == Phase::Gathering {
            turn.status.observed_generation = generation;
        }
        set_ready(&mut turn.status, next, &step, generation, &at);
        history::summarize(&mut turn.status, &cluster.spec);

        if first_sight || next != phase {
            failpoint::hit(failpoint::When::Before, next);
        }
        if turn.status != written {
            resource_version = write_status(api, cluster, &turn.status, resource_version).await?;
        }
        if first_sight || next != phase {
            failpoint::hit(failpoint::When::After, next);
        }
        // The status write made it true: now it counts.
        if first_sight || next != phase {
            let from = (!first_sight).then_some(phase);
            ctx.metrics
                .transition(from, next, time_in(&written, phase, &at));
        }
        if step.blocked.is_some() {
            ctx.metrics.failure(phase, step.reason);
        }
        if first_sight || next != phase {
            let note = match step.message.as_str() {
                "" => format!("{} -> {next}", from_label(first_sight, phase)),
                m => format!("{} -> {next}: {m}", from_label(first_sight, phase)),
            };
            let type_ = if step.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            told.tell(type_, step.reason, note).await;
        }
        if step.blocked.is_some() {
            // Warn when the reason is new, not on every retry.
            if written.conditions != turn.status.conditions {
                told.tell(EventType::Warning, step.reason, step.message.clone())
                    .await;
            }
            return Ok(Action::requeue(ctx.block(cluster)));
        }
        if next == phase && !first_sight {
            ctx.reset(cluster);
            return Ok(Action::requeue(READY_RESYNC));
        }
    }
    // Still progressing: come back soon, after the others had their turn.
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// How long the cluster has been in `phase`, from the history's last entry into it.
fn time_in(status: &SIPClusterStatus, phase: Phase, now: &Time) -> Option<Duration> {
    let entered = status.history.iter().rev().find(|h| h.to == phase)?;
    Duration::try_from(now.0.duration_since(entered.time.0)).ok()
}

fn from_label(first_sight: bool, phase: Phase) -> String {
    if first_sight {
        "created".into()
    } else {
        phase.to_string()
    }
}

fn set_ready(
    status: &mut SIPClusterStatus,
    phase: Phase,
    step: &Step,
    generation: Option<i64>,
    at: &Time,
) {
    use conditions::{READY, reason, set};
    let (ok, why, message) = match (phase, step.blocked) {
        (_, Some(condition)) => (false, condition, step.message.clone()),
        (Phase::Ready, None) => (
            true,
            reason::RECONCILIATION_SUCCEEDED,
            "every host and service is in place".to_string(),
        ),
        (Phase::Decommissioning, None) => {
            (false, reason::PROGRESSING, "decommissioning".to_string())
        }
        (p, None) => (false, reason::PROGRESSING, format!("{p}")),
    };
    set(
        &mut status.conditions,
        READY,
        ok,
        why,
        &message,
        generation,
        at,
    );
}

/// One status write, guarded by the resourceVersion the turn started from (or last wrote):
/// another writer in between is a conflict, and the turn starts over from what it wrote.
async fn write_status(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    status: &SIPClusterStatus,
    resource_version: Option<String>,
) -> Result<Option<String>, Error> {
    let patch = json!({
        "apiVersion": "airship.airshipit.org/v1",
        "kind": "SIPCluster",
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let written = api
        .patch_status(
            &cluster.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version())
}

async fn cleanup(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
) -> Result<Action, Error> {
    let mut turn = Turn::new(ctx, cluster);
    let phase = turn.status.phase;
    if phase != Some(Phase::Decommissioning) {
        let at = now();
        history::record(
            &mut turn.status,
            phase,
            Phase::Decommissioning,
            "Deleting",
            "",
            &at,
        );
        turn.status.phase = Some(Phase::Decommissioning);
        let step = Step::go(Event::Deleting, "Deleting", "");
        set_ready(
            &mut turn.status,
            Phase::Decommissioning,
            &step,
            cluster.metadata.generation,
            &at,
        );
        write_status(api, cluster, &turn.status, cluster.resource_version()).await?;
        let from = phase.unwrap_or_default();
        let in_phase = time_in(cluster.status.as_ref().unwrap_or(&turn.status), from, &at);
        ctx.metrics
            .transition(phase, Phase::Decommissioning, in_phase);
        ctx.publish(
            cluster,
            EventType::Normal,
            "Deleting",
            format!("{} -> Decommissioning", phase.unwrap_or_default()),
        )
        .await;
    }
    if !turn.remove_services().await? || !turn.decommission().await? {
        return Ok(Action::requeue(ctx.bump(cluster)));
    }
    // Drift recorded before the deletion (someone removed an object first) goes with the
    // cluster; the operator's own deletions are marked and never recorded.
    let _ = ctx.drift.take(&ObjectRef::from_obj(cluster));
    ctx.publish(
        cluster,
        EventType::Normal,
        "Decommissioned",
        format!(
            "services deleted, labels removed from {} hosts",
            turn.status.hosts.len()
        ),
    )
    .await;
    Ok(Action::await_change())
}

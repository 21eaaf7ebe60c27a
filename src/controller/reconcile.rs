//! One turn on one SIPCluster: the finalizer, added at first sight ([`with_finalizer`]), routes
//! it to [`apply`] (work the phases) or [`cleanup`] (decommission); each step's outside event
//! ([`step::observe`]) or phase work ([`Turn::work`]) goes to the machine and is recorded by
//! [`Commits`]. Failures go to [`error_policy`], which counts them and backs the cluster off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;

use super::announce::Announcer;
use super::commit::Commits;
use super::conditions::reason;
use super::phases::{Prefetched, Turn};
use super::step::{self, Step};
use super::{Context, Error};
use crate::api::{FINALIZER, Phase, SIPCluster};
use crate::machine;

/// Phases one reconcile may walk through before yielding to other clusters.
const MAX_STEPS: usize = 8;
/// A turn that takes longer is abandoned (its writes so far are all guarded and persisted), so
/// one stuck call cannot starve the other clusters.
/// How often a Ready cluster is checked even without events.
const READY_RESYNC: Duration = Duration::from_secs(300);

#[tracing::instrument(skip_all, fields(
    namespace = cluster.namespace().unwrap_or_default(),
    name = cluster.name_any(),
    phase = cluster.status.as_ref().and_then(|s| s.phase).unwrap_or_default().as_str(),
))]
pub async fn reconcile(cluster: Arc<SIPCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<SIPCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let (api, ctx) = (&api, &ctx);
    super::sweep::sweep(ctx);
    let turn = async {
        let (cluster, prefetched) = with_finalizer(api, cluster, ctx).await?;
        finalizer(api, FINALIZER, cluster, move |event| async move {
            match event {
                Finalizer::Apply(c) => apply(api, &c, ctx, prefetched).await,
                Finalizer::Cleanup(c) => cleanup(api, &c, ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    };
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(ctx.turn_limit, turn).await {
        Err(_) => Err(Error::Timeout(ctx.turn_limit)),
        Ok(result) => result,
    };
    match &result {
        Ok(_) => ctx.metrics.reconciled("success", None, started.elapsed()),
        Err(e) => ctx
            .metrics
            .reconciled("error", Some(e.label()), started.elapsed()),
    }
    result
}

pub fn error_policy(cluster: Arc<SIPCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let phase = cluster
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default();
    ctx.metrics.failure(phase, error.label());
    if error.label() == "Conflict" {
        // Someone wrote in between: decide again on fresh data, soon.
        tracing::info!(name = %cluster.name_any(), error = %error, "write conflict; retrying");
        return Action::requeue(ctx.backoff.conflict(&cluster));
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
    Action::requeue(ctx.backoff.fail(&cluster))
}

/// Adds the finalizer to a SIPCluster that lacks it (the operator's first sight of it) and
/// returns the object as that write left it. kube's finalizer helper would add it too, but
/// then end the turn and wait for the watch to bring the change back, and that turn would read
/// the object again: the patch's answer is already the latest version, so the turn goes on
/// with it. Guarded by the resourceVersion seen: a 409 means the cache was behind, retried.
/// Such a cluster is almost always new and about to choose hosts: what its first phases read
/// is read while the patch is on its way ([`Prefetched`]; one whose finalizer someone removed
/// later reads nothing ahead, unless it is still choosing hosts).
async fn with_finalizer(
    api: &Api<SIPCluster>,
    cluster: Arc<SIPCluster>,
    ctx: &Context,
) -> Result<(Arc<SIPCluster>, Prefetched), Error> {
    if cluster.metadata.deletion_timestamp.is_some()
        || cluster.finalizers().iter().any(|f| f == FINALIZER)
    {
        return Ok((cluster, Prefetched::default()));
    }
    let mut finalizers = cluster.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": cluster.resource_version()},
    });
    let (name, params, patch) = (
        cluster.name_any(),
        PatchParams::default(),
        Patch::Merge(&patch),
    );
    let (patched, prefetched) = futures::try_join!(
        api.patch(&name, &params, &patch),
        Prefetched::read(ctx, &cluster)
    )?;
    if let Some(version) = patched.resource_version() {
        ctx.own_writes.wrote(&patched, &version);
    }
    Ok((Arc::new(patched), prefetched))
}

async fn apply(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
    prefetched: Prefetched,
) -> Result<Action, Error> {
    // An earlier write of this operator's own, which its later write superseded: the event of
    // that later write is on its way and starts the turn that works on it.
    if ctx.own_writes.is_earlier(cluster) {
        return Ok(Action::await_change());
    }
    // The cache may lag behind this operator's own last status write; the phase and ledger
    // must be the latest, so the turn starts from a fresh read of the object, unless the
    // cached object is that write.
    let fresh;
    let cluster = if ctx.own_writes.is_last(cluster) {
        cluster
    } else {
        let Some(read) = api.get_opt(&cluster.name_any()).await? else {
            return Ok(Action::await_change());
        };
        fresh = read;
        &fresh
    };
    if let Some(wait) = ctx.backoff.held(cluster, ctx.touched.of(cluster)) {
        tracing::debug!(
            ?wait,
            "held: nothing it waits for changed since it last failed"
        );
        return Ok(Action::requeue(wait));
    }
    let mut told = Announcer::new(&ctx.recorder, cluster);
    let result = advance(api, cluster, ctx, &mut told, prefetched).await;
    told.settle().await;
    result
}

/// Walks the cluster through as many phases as it can go this turn. The steps are written
/// together where nothing outside the status depends on them: Gathering's choice and
/// Extracting's reads are written before the first phase that writes elsewhere (services,
/// labels), so every object the operator writes is for a ledger already persisted.
async fn advance(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
    told: &mut Announcer,
    prefetched: Prefetched,
) -> Result<Action, Error> {
    let mut turn = Turn::new(ctx, cluster).with_prefetched(prefetched);
    let mut commits = Commits::new(api, cluster, ctx, told);
    for _ in 0..MAX_STEPS {
        let step_started = std::time::Instant::now();
        let step = match step::observe(&turn.status, cluster.metadata.generation, false) {
            Some(step) => step,
            None => {
                let phase = turn.status.phase.unwrap_or_default();
                if machine::writes_outside_the_status(phase) && commits.ledger_pending(&turn.status)
                {
                    commits.flush(&turn.status).await?;
                }
                // Claims another operator may have made at the same moment are written before
                // they are confirmed, and confirmed before Extracting persists anything.
                if phase == Phase::Extracting && turn.claims_to_confirm() {
                    turn.claims_version = commits.flush(&turn.status).await?;
                }
                let before = turn.status.clone();
                match turn.work(phase).await {
                    Ok(Some(step)) => step,
                    Ok(None) => {
                        commits.flush(&turn.status).await?;
                        return Ok(Action::await_change());
                    }
                    Err(e) => {
                        // The steps before the failure are done: written, the status says
                        // where the cluster is stuck. The failed work's changes are not.
                        if let Err(write) = commits.flush(&before).await {
                            tracing::debug!(error = %write, "writing the steps before a failure");
                        }
                        return Err(e.into());
                    }
                }
            }
        };
        tracing::debug!(reason = step.reason, elapsed = ?step_started.elapsed(), "phase work");
        let transition = commits.step(&mut turn.status, &step);
        if step.blocked.is_some() {
            commits.flush(&turn.status).await?;
            return Ok(Action::requeue(ctx.backoff.hold(cluster, turn.touched)));
        }
        if !transition.moves() {
            let version = commits.flush(&turn.status).await?;
            ctx.backoff.reset(cluster);
            match turn.verified {
                Some(check) if transition.to == Phase::Ready => {
                    ctx.verified
                        .remember(cluster, version, check, Instant::now())
                }
                _ => ctx.verified.forget(cluster),
            }
            return Ok(Action::requeue(READY_RESYNC));
        }
    }
    commits.flush(&turn.status).await?;
    // Still progressing: come back soon, after the others had their turn.
    Ok(Action::requeue(Duration::from_millis(100)))
}

async fn cleanup(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
) -> Result<Action, Error> {
    // The cluster is going: its story is told to the end before the finalizer goes.
    let mut told = Announcer::new(&ctx.recorder, cluster);
    let result = decommission(api, cluster, ctx, &mut told).await;
    told.settle().await;
    result
}

/// Enters Decommissioning (once), then deletes the services and unlabels the ledger's hosts;
/// the finalizer goes when this returns `await_change`.
async fn decommission(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
    told: &mut Announcer,
) -> Result<Action, Error> {
    let mut turn = Turn::new(ctx, cluster);
    let mut commits = Commits::new(api, cluster, ctx, told);
    if let Some(step) = step::observe(&turn.status, cluster.metadata.generation, true) {
        commits.step(&mut turn.status, &step);
        commits.flush(&turn.status).await?;
    }
    turn.remove_services().await?;
    if !turn.decommission().await? {
        // Said where people look, with the predecessor's reason; the finalizer stays.
        let step = Step::blocked(
            reason::UNABLE_TO_DECOMMISSION,
            "UnableToDecommission",
            "a host changed while its labels were being removed; retrying".into(),
        );
        commits.step(&mut turn.status, &step);
        commits.flush(&turn.status).await?;
        return Ok(Action::requeue(ctx.backoff.fail(cluster)));
    }
    // Drift recorded before the deletion (someone removed an object first) goes with the
    // cluster; the operator's own deletions are marked and never recorded.
    let _ = ctx.drift.take(&ObjectRef::from_obj(cluster));
    ctx.verified.forget(cluster);
    ctx.own_writes.forget(cluster);
    ctx.touched.forget(cluster);
    ctx.backoff.reset(cluster);
    commits.tell(
        EventType::Normal,
        "Decommissioned",
        format!(
            "services deleted, labels removed from {} hosts",
            turn.status.hosts.len()
        ),
    );
    Ok(Action::await_change())
}

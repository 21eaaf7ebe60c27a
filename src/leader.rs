//! High availability: replicas compete for a `coordination.k8s.io` Lease and only the holder
//! runs the controller. The Lease is not a fence (optimistic concurrency on every write stays
//! the real guard); it keeps a standby from doing the same work twice. A leader that loses the
//! Lease, or cannot renew it in time (its own deadline: last renewal + duration - a fifth),
//! stops at once, dropping the turn in flight, and exits, so a restart begins from the
//! persisted phases.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use kube_lease_manager::LeaseManagerBuilder;

use crate::metrics::Metrics;

/// Field manager of the operator's Lease writes.
const LEASE_MANAGER: &str = "sip-operator-lease";

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's holder identity (the pod name).
    pub identity: String,
    /// Seconds a Lease stays held without renewal; a standby takes over after it.
    pub duration_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {0}: {1}")]
    Lease(String, kube_lease_manager::LeaseManagerError),
    #[error("lost lease {0}: {1}")]
    Lost(String, String),
}

/// Waits for the Lease, then runs `work` until `shutdown` (Ok: `work`'s stop future resolves
/// and the step in hand finishes) or until leadership is lost (Err: `work` is dropped at once,
/// and the caller exits).
pub async fn run_as_leader<W, F>(
    client: kube::Client,
    lease: LeaseSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    work: W,
) -> Result<(), LeaderError>
where
    W: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> F,
    F: Future<Output = ()>,
{
    let what = format!("{}/{}", lease.namespace, lease.name);
    // Renew at a third of the duration left, as client-go does.
    let grace = (lease.duration_seconds / 3).max(1);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds)
        .with_grace(grace)
        .with_field_manager(LEASE_MANAGER)
        .build()
        .await
        .map_err(|e| LeaderError::Lease(what.clone(), e))?;
    let (mut leader, lease_task) = manager.watch().await;
    metrics.set_leader(false);
    // Standby replicas are healthy and ready to take over.
    metrics.set_ready(true);
    tracing::info!(lease = %what, identity = %lease.identity, "waiting for the lease");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut on_shutdown = stopped.clone();
    let acquired = tokio::select! {
        held = leader.wait_for(|held| *held) => held.is_ok(),
        _ = on_shutdown.wait_for(|s| *s) => false,
    };
    if !acquired {
        drop(leader);
        let _ = lease_task.await;
        return Ok(());
    }
    tracing::info!(lease = %what, "leading: starting the controller");
    metrics.set_leader(true);

    // Leadership ends when the library says so, or at this replica's own deadline (its last
    // renewal plus the duration, less a margin), whichever comes first: the library keeps
    // reporting leadership while its renewals fail.
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(None::<String>);
    let mut watch_loss = leader.clone();
    let leases: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let guard = tokio::spawn(async move {
        let reason = tokio::select! {
            _ = watch_loss.wait_for(|held| !*held) => "the lease manager lost it".to_string(),
            reason = fence(leases, lease.name, lease.identity, lease.duration_seconds) => reason,
        };
        let _ = lost_tx.send(Some(reason));
    });
    let mut stopped_for_work = stopped;
    let stop_work: std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> =
        Box::pin(async move {
            let _ = stopped_for_work.wait_for(|s| *s).await;
        });
    // A shutdown lets the step in hand finish; a loss drops the work at once, so a turn in
    // flight writes nothing more.
    let lost = tokio::select! {
        _ = work(stop_work) => None,
        reason = lost_rx.wait_for(|r| r.is_some()) => reason.ok().and_then(|r| r.clone()),
    };
    guard.abort();
    metrics.set_working(false);
    metrics.set_leader(false);
    // Dropping the receiver makes the lease task release the Lease before it ends.
    drop(leader);
    let _ = lease_task.await;
    match lost {
        Some(reason) => Err(LeaderError::Lost(what, reason)),
        None => Ok(()),
    }
}

/// Resolves when this replica must stop leading: the Lease names another holder or is gone,
/// or its last renewal (`renewTime`, written with this process's clock) is older than the
/// duration less a fifth. Reads the Lease every fifth of the duration; a failed read keeps the
/// deadline it had.
async fn fence(
    leases: Api<Lease>,
    name: String,
    identity: String,
    duration_seconds: u64,
) -> String {
    let duration = Duration::from_secs(duration_seconds);
    let (poll, margin) = (duration / 5, duration / 5);
    let mut deadline = Instant::now() + duration - margin;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return format!(
                "not renewed for {:?}; stopping before it expires",
                duration - margin
            );
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        let read = tokio::time::timeout(poll, leases.get_opt(&name)).await;
        let Ok(Ok(found)) = read else { continue };
        let Some(spec) = found.and_then(|l| l.spec) else {
            return "the Lease was deleted".into();
        };
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            let holder = spec.holder_identity.unwrap_or_default();
            return format!("the Lease is held by {holder:?}");
        }
        if let Some(renewed) = spec.renew_time {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed.0);
            let age = Duration::try_from(age).unwrap_or_default();
            deadline = (Instant::now() + duration - margin)
                .checked_sub(age)
                .unwrap_or_else(Instant::now);
        }
    }
}

//! High availability: replicas compete for a `coordination.k8s.io` Lease and only the holder
//! runs the controller. The Lease is not a fence (optimistic concurrency on every write stays
//! the real guard); it keeps a standby from doing the same work twice. A leader that loses the
//! Lease stops at once and exits, so a restart begins from the persisted phases.

use std::future::Future;
use std::sync::Arc;

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
    #[error("lost lease {0} to another replica")]
    Lost(String),
}

/// Waits for the Lease, then runs `work` until `shutdown` (Ok) or until the Lease is lost
/// (Err: the caller exits). `work` gets a future that resolves when it must stop.
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
    let manager = LeaseManagerBuilder::new(client, &lease.name)
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

    let mut watch_loss = leader.clone();
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lost_flag = lost.clone();
    let mut stopped_for_work = stopped;
    let stop_work: std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> =
        Box::pin(async move {
            tokio::select! {
                _ = watch_loss.wait_for(|held| !*held) => {
                    lost_flag.store(true, std::sync::atomic::Ordering::Release);
                }
                _ = stopped_for_work.wait_for(|s| *s) => {}
            }
        });
    work(stop_work).await;
    metrics.set_leader(false);
    // Dropping the receiver makes the lease task release the Lease before it ends.
    drop(leader);
    let _ = lease_task.await;
    if lost.load(std::sync::atomic::Ordering::Acquire) {
        Err(LeaderError::Lost(what))
    } else {
        Ok(())
    }
}

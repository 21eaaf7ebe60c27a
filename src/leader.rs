//! High availability: replicas compete for a `coordination.k8s.io` Lease and only the holder
//! runs the controller. The Lease keeps a standby from doing the same work twice; optimistic
//! concurrency on every write stays the real guard. A leader renews at a third of the
//! duration and must have renewed within two thirds of it (client-go's renew deadline): past
//! that, its [`Fence`] refuses every write before it is sent, and it stops at once, dropping
//! the turn in flight, and exits, so a restart begins from the persisted phases. The third
//! left is the margin for clock skew between this replica and the next holder.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tower::BoxError;

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
    /// What the Lease moves: the renew deadline the controller's writes are checked against.
    pub fence: Fence,
}

/// Until when this replica may write: its renew deadline while it leads. Checked by the
/// controller's client before every write it sends ([`Fence::check`]), so a leader that
/// stalled past its deadline (a paused process, a slow turn) writes nothing more even before
/// the watcher below notices.
#[derive(Clone, Debug)]
pub struct Fence(Arc<std::sync::Mutex<Option<Instant>>>);

impl Fence {
    /// Shut: no write passes until a Lease is held.
    pub fn shut() -> Self {
        Fence(Arc::new(std::sync::Mutex::new(Some(Instant::now()))))
    }

    /// Open for good: leader election is off.
    pub fn open() -> Self {
        Fence(Arc::new(std::sync::Mutex::new(None)))
    }

    fn until(&self, deadline: Instant) {
        *crate::sync::lock(&self.0) = Some(deadline);
    }

    /// Whether a write may be sent now.
    pub fn allows_writes(&self) -> bool {
        match *crate::sync::lock(&self.0) {
            None => true,
            Some(deadline) => Instant::now() < deadline,
        }
    }

    /// The client's filter: reads always pass; a write passes while the deadline holds. The
    /// Lease's own writes are the lease manager's, on a client without this filter. Events
    /// pass too: a report of what was done, not state anyone decides on, and one refused is
    /// lost for good (the story of a turn that ended at the deadline is still worth telling).
    pub fn check<B>(&self, request: http::Request<B>) -> Result<http::Request<B>, BoxError> {
        let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        let report = request.uri().path().starts_with("/apis/events.k8s.io/");
        if read || report || self.allows_writes() {
            return Ok(request);
        }
        Err(format!(
            "{} {} not sent: this replica is past its Lease's renew deadline",
            request.method(),
            request.uri().path()
        )
        .into())
    }
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
    let fence = lease.fence.clone();
    let what = format!("{}/{}", lease.namespace, lease.name);
    // Renewed when a third of the duration has passed, so one failed renewal still leaves a
    // second chance before the renew deadline at two thirds.
    let grace = lease
        .duration_seconds
        .saturating_sub(renew_after(lease.duration_seconds).as_secs())
        .clamp(1, lease.duration_seconds.saturating_sub(1).max(1));
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
    // Just acquired: renewed now.
    fence.until(Instant::now() + renew_deadline(lease.duration_seconds));
    metrics.set_leader(true);

    // Leadership ends when the library says so, or at this replica's own deadline (its last
    // renewal plus the duration, less a margin), whichever comes first: the library keeps
    // reporting leadership while its renewals fail.
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(None::<String>);
    let mut watch_loss = leader.clone();
    let leases: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let renewals = fence.clone();
    let guard = tokio::spawn(async move {
        let reason = tokio::select! {
            _ = watch_loss.wait_for(|held| !*held) => "the lease manager lost it".to_string(),
            reason = watch_renewals(leases, &lease, renewals) => reason,
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
    fence.until(Instant::now());
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

/// When the leader renews: a third into the duration.
fn renew_after(duration_seconds: u64) -> Duration {
    Duration::from_secs(duration_seconds) / 3
}

/// How long after its last renewal a leader may still write: two thirds of the duration.
pub fn renew_deadline(duration_seconds: u64) -> Duration {
    Duration::from_secs(duration_seconds) * 2 / 3
}

/// Resolves when this replica must stop leading: the Lease names another holder or is gone,
/// or its last renewal (`renewTime`, written with this process's clock) is older than the
/// renew deadline. Reads the Lease every sixth of the duration, moving `fence` to each
/// renewal's deadline; a failed read keeps the deadline it had.
async fn watch_renewals(leases: Api<Lease>, lease: &LeaseSettings, fence: Fence) -> String {
    let within = renew_deadline(lease.duration_seconds);
    let poll = Duration::from_secs(lease.duration_seconds) / 6;
    let mut deadline = Instant::now() + within;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return format!("not renewed for {within:?}; stopping before it expires");
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        let read = tokio::time::timeout(poll, leases.get_opt(&lease.name)).await;
        let Ok(Ok(found)) = read else { continue };
        let Some(spec) = found.and_then(|l| l.spec) else {
            fence.until(Instant::now());
            return "the Lease was deleted".into();
        };
        if spec.holder_identity.as_deref() != Some(lease.identity.as_str()) {
            fence.until(Instant::now());
            let holder = spec.holder_identity.unwrap_or_default();
            return format!("the Lease is held by {holder:?}");
        }
        if let Some(renewed) = spec.renew_time {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed.0);
            let age = Duration::try_from(age).unwrap_or_default();
            deadline = (Instant::now() + within)
                .checked_sub(age)
                .unwrap_or_else(Instant::now);
            fence.until(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: http::Method) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/a/configmaps")
            .body(())
            .unwrap()
    }

    #[test]
    fn the_fence_passes_reads_always_and_writes_only_before_the_deadline() {
        let shut = Fence::shut();
        assert!(shut.check(request(http::Method::GET)).is_ok());
        for write in [
            http::Method::POST,
            http::Method::PATCH,
            http::Method::PUT,
            http::Method::DELETE,
        ] {
            let refused = shut.check(request(write.clone())).unwrap_err().to_string();
            assert!(
                refused.contains(write.as_str()) && refused.contains("renew deadline"),
                "{refused}"
            );
        }
        shut.until(Instant::now() + Duration::from_secs(60));
        assert!(shut.check(request(http::Method::PATCH)).is_ok());
        shut.until(Instant::now());
        assert!(shut.check(request(http::Method::PATCH)).is_err());
        assert!(Fence::open().check(request(http::Method::DELETE)).is_ok());
        let event = http::Request::builder()
            .method(http::Method::POST)
            .uri("/apis/events.k8s.io/v1/namespaces/a/events")
            .body(())
            .unwrap();
        assert!(shut.check(event).is_ok(), "an Event is a report, not state");
    }

    #[test]
    fn renewals_come_at_a_third_and_the_deadline_at_two_thirds() {
        assert_eq!(renew_after(15), Duration::from_secs(5));
        assert_eq!(renew_deadline(15), Duration::from_secs(10));
        assert_eq!(renew_deadline(3), Duration::from_secs(2));
    }
}

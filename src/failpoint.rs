//! Crash points for the resume tests: `SIP_FAILPOINT=<when>:<phase>` makes the process abort
//! (as a SIGKILL would stop it, no cleanup) at an exact phase boundary:
//! - `before:<phase>`: the work that leads into `<phase>` is done (labels patched, services
//!   applied) but the status saying so is not written;
//! - `after:<phase>`: the status write that holds the step into `<phase>` has succeeded (a turn
//!   writes its steps together up to the first phase that writes outside the status, so that
//!   write may hold the next steps too) and its Events are published; nothing after it is done.
//!
//! Unset (always, outside tests) it costs one load of a cached `Option`.
//!
//! [`Cancel`] is the other kind, set per controller (`Settings::cancel`), for the tests that
//! prove no in-process memory can miss a write the operator made: right after a write at its
//! [`Site`] succeeds, the turn stops there as if the network had swallowed the answer, and its
//! time limit drops it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::api::Phase;

const VARIABLE: &str = "SIP_FAILPOINT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

fn configured() -> Option<(When, Phase)> {
    static POINT: OnceLock<Option<(When, Phase)>> = OnceLock::new();
    *POINT.get_or_init(|| parse(&std::env::var(VARIABLE).ok()?))
}

fn parse(value: &str) -> Option<(When, Phase)> {
    let (when, phase) = value.split_once(':')?;
    let when = match when {
        "before" => When::Before,
        "after" => When::After,
        _ => return None,
    };
    let phase = Phase::ALL.into_iter().find(|p| p.as_str() == phase)?;
    Some((when, phase))
}

/// Whether this is the configured crash point.
pub fn armed(when: When, phase: Phase) -> bool {
    configured() == Some((when, phase))
}

/// Aborts the process when this is the configured crash point.
pub fn hit(when: When, phase: Phase) {
    if armed(when, phase) {
        tracing::warn!(?when, %phase, "failpoint: aborting");
        std::process::abort();
    }
}

/// Where the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// A SIPCluster's status (its phase and ledger).
    Status,
    /// A BareMetalHost's labels.
    Labels,
    /// A service's object, server-side applied.
    Apply,
    /// A service's object, deleted.
    Delete,
}

/// Cancels the turn after every `every`-th successful write at `site`, `times` times: a turn
/// that makes several such writes (a service's objects) would otherwise never finish.
#[derive(Debug)]
pub struct Cancel {
    site: Site,
    every: u32,
    times: u32,
    writes: AtomicU32,
    cancelled: AtomicU32,
}

impl Cancel {
    pub fn new(site: Site, every: u32, times: u32) -> Self {
        Cancel {
            site,
            every: every.max(1),
            times,
            writes: AtomicU32::new(0),
            cancelled: AtomicU32::new(0),
        }
    }

    /// Turns cancelled so far.
    pub fn cancelled(&self) -> u32 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// A write at `site` succeeded: the turn goes on, or never returns from here.
    pub async fn after(&self, site: Site) {
        if site != self.site {
            return;
        }
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.every)
            && self
                .cancelled
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < self.times).then_some(c + 1)
                })
                .is_ok()
        {
            tracing::warn!(?site, "failpoint: this turn stops here, its write made");
            std::future::pending::<()>().await;
        }
    }
}

/// Holds the first write at `site` after the decision to make it and before it is sent, until
/// the test lets it go: the window in which another writer can change the object, so the
/// write's resourceVersion guard meets a real 409.
#[derive(Debug)]
pub struct Pause {
    site: Site,
    armed: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Pause {
    pub fn new(site: Site) -> Self {
        Pause {
            site,
            armed: std::sync::atomic::AtomicBool::new(true),
            reached: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once a write is held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held write go.
    pub fn release(&self) {
        self.release.notify_one();
    }

    async fn before(&self, site: Site) {
        if site == self.site && self.armed.swap(false, Ordering::Relaxed) {
            tracing::warn!(?site, "failpoint: holding this write");
            self.reached.notify_one();
            self.release.notified().await;
        }
    }
}

/// [`Pause::before`] when one is set.
pub async fn before_write(pause: Option<&Pause>, site: Site) {
    if let Some(pause) = pause {
        pause.before(site).await;
    }
}

/// [`Cancel::after`] when one is set.
pub async fn after_write(cancel: Option<&Cancel>, site: Site) {
    if let Some(cancel) = cancel {
        cancel.after(site).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_and_nonsense_is_ignored() {
        assert_eq!(
            parse("before:Labeling"),
            Some((When::Before, Phase::Labeling))
        );
        assert_eq!(parse("after:Ready"), Some((When::After, Phase::Ready)));
        for bad in ["", "before", "during:Ready", "after:ready", "after:Nowhere"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

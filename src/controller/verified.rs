//! The Ready check's memory between turns. The check reads the services' Secrets and the
//! objects they are rendered from (the operator may not watch Secrets); the turn that starts
//! because of the operator's own status write, right after a full check, would read them all
//! again for nothing. So a Ready cluster whose object is still at the version the operator
//! left it, with no host or template event concerning it since and a full check not long ago, is checked from memory
//! (the scheduling decision and the drift the watches saw) without reads. Any other change to
//! the SIPCluster (a poke, a spec change), a host or template event concerning it, or the age of the last full check
//! makes the next check read everything again. It also knows the version of the operator's
//! last write to each SIPCluster (its status, or the finalizer it adds), so a turn whose
//! cached object is that version skips the fresh read; and of the few writes before it, so a
//! turn started by the event of one of those (its later write's event is on its way and
//! starts a turn of its own) is skipped without a read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::SIPCluster;

/// A full check at least this often, whatever the memory says (the resync is 300 s).
const FULL_CHECK_AT_LEAST_EVERY: Duration = Duration::from_secs(150);

#[derive(Default)]
pub struct Verified {
    checks: Mutex<HashMap<(String, String), Entry>>,
    /// The resourceVersions of each SIPCluster's last writes by this operator.
    written: Mutex<HashMap<(String, String), Written>>,
}

/// Versions an operator's writes produced, newest last.
#[derive(Default)]
struct Written(Vec<String>);

/// How many versions are remembered: a turn writes the finalizer and a status write or three,
/// and only the latest events can still be on their way. A version that fell out costs only
/// what it cost before: the turn it starts reads the cluster again.
const WRITES_REMEMBERED: usize = 4;

struct Entry {
    version: Option<String>,
    touched: u64,
    full_at: Instant,
}

/// What a Ready check did: read everything, or trusted the memory; and how many events had concerned the cluster (`touched.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub full: bool,
    pub touched: u64,
}

/// A SIPCluster's `(namespace, name)`, what the controller's per-cluster memories are keyed by.
pub(super) fn key(cluster: &SIPCluster) -> (String, String) {
    (
        cluster.metadata.namespace.clone().unwrap_or_default(),
        cluster.metadata.name.clone().unwrap_or_default(),
    )
}

impl Verified {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        crate::sync::lock(&self.checks)
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Written>> {
        crate::sync::lock(&self.written)
    }

    /// Records the version the operator's write (status or finalizer) produced.
    pub fn wrote(&self, cluster: &SIPCluster, version: &str) {
        let mut written = self.written();
        let versions = &mut written.entry(key(cluster)).or_default().0;
        if versions.len() == WRITES_REMEMBERED {
            versions.remove(0);
        }
        versions.push(version.to_string());
    }

    /// Whether `cached` is the object as the operator's last write left it: then the
    /// cache is as fresh as a read would be (anyone's later write comes as an event of its
    /// own), and the turn need not read the SIPCluster again.
    pub fn is_own_last_write(&self, cached: &SIPCluster) -> bool {
        cached
            .metadata
            .resource_version
            .as_ref()
            .is_some_and(|v| self.written().get(&key(cached)).and_then(|w| w.0.last()) == Some(v))
    }

    /// Whether `cached` is a version an earlier write of the operator produced, which its
    /// last write superseded: the watch has yet to bring that write, and its event starts a
    /// turn of its own, so a turn on this one would only read the object again.
    pub fn is_own_earlier_write(&self, cached: &SIPCluster) -> bool {
        let Some(version) = cached.metadata.resource_version.as_ref() else {
            return false;
        };
        self.written().get(&key(cached)).is_some_and(|w| {
            w.0.split_last()
                .is_some_and(|(last, earlier)| last != version && earlier.contains(version))
        })
    }

    /// Whether nothing the Ready check reads can have changed since its last full check.
    pub fn unchanged(&self, cluster: &SIPCluster, touched: u64, now: Instant) -> bool {
        self.map().get(&key(cluster)).is_some_and(|e| {
            e.version == cluster.metadata.resource_version
                && e.touched == touched
                && now.duration_since(e.full_at) < FULL_CHECK_AT_LEAST_EVERY
        })
    }

    /// After a turn that ended Ready without moving: `version`, the SIPCluster's version as
    /// the turn left it.
    pub fn remember(
        &self,
        cluster: &SIPCluster,
        version: Option<String>,
        check: Check,
        now: Instant,
    ) {
        let mut map = self.map();
        let full_at = match (check.full, map.get(&key(cluster))) {
            (false, Some(e)) => e.full_at,
            // Memory with no full check behind it is no memory.
            (false, None) => return,
            (true, _) => now,
        };
        map.insert(
            key(cluster),
            Entry {
                version,
                touched: check.touched,
                full_at,
            },
        );
    }

    pub fn forget(&self, cluster: &SIPCluster) {
        self.map().remove(&key(cluster));
    }

    /// A deleted cluster leaves nothing behind.
    pub fn drop_cluster(&self, cluster: &SIPCluster) {
        self.forget(cluster);
        self.written().remove(&key(cluster));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(version: &str) -> SIPCluster {
        let mut c = SIPCluster::new("tenant", Default::default());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    #[test]
    fn only_the_operators_own_last_write_within_the_window_skips_the_reads() {
        let v = Verified::default();
        let t0 = Instant::now();
        let full = Check {
            full: true,
            touched: 7,
        };
        assert!(!v.unchanged(&cluster("10"), 7, t0), "nothing remembered");
        v.remember(&cluster("9"), Some("10".into()), full, t0);
        let cases = [
            (
                cluster("10"),
                7,
                t0 + Duration::from_secs(1),
                true,
                "as the operator left it",
            ),
            (cluster("11"), 7, t0, false, "someone wrote the SIPCluster"),
            (
                cluster("10"),
                8,
                t0,
                false,
                "a host event concerning it came",
            ),
            (
                cluster("10"),
                7,
                t0 + FULL_CHECK_AT_LEAST_EVERY,
                false,
                "the full check is old",
            ),
        ];
        for (c, epoch, now, want, msg) in cases {
            assert_eq!(v.unchanged(&c, epoch, now), want, "{msg}");
        }
        // A check from memory keeps the time of the last full one.
        let later = t0 + FULL_CHECK_AT_LEAST_EVERY / 2;
        let from_memory = Check {
            full: false,
            touched: 7,
        };
        v.remember(&cluster("10"), Some("10".into()), from_memory, later);
        assert!(!v.unchanged(&cluster("10"), 7, t0 + FULL_CHECK_AT_LEAST_EVERY));
        v.forget(&cluster("10"));
        assert!(!v.unchanged(&cluster("10"), 7, t0));
        // A check from memory with nothing behind it remembers nothing.
        v.remember(&cluster("10"), Some("10".into()), from_memory, t0);
        assert!(!v.unchanged(&cluster("10"), 7, t0));
    }

    #[test]
    fn the_cache_is_fresh_only_at_the_operators_own_last_write() {
        let v = Verified::default();
        assert!(!v.is_own_last_write(&cluster("5")), "nothing written yet");
        v.wrote(&cluster("4"), "5");
        assert!(v.is_own_last_write(&cluster("5")));
        assert!(
            !v.is_own_last_write(&cluster("4")),
            "the cache lags behind the write"
        );
        assert!(!v.is_own_last_write(&cluster("6")), "someone wrote after");
        v.drop_cluster(&cluster("5"));
        assert!(!v.is_own_last_write(&cluster("5")));
    }

    #[test]
    fn a_version_the_operators_later_write_superseded_is_known_as_such() {
        let v = Verified::default();
        assert!(
            !v.is_own_earlier_write(&cluster("5")),
            "nothing written yet"
        );
        for version in ["5", "6", "7"] {
            v.wrote(&cluster("4"), version);
        }
        assert!(v.is_own_earlier_write(&cluster("5")));
        assert!(v.is_own_earlier_write(&cluster("6")));
        assert!(!v.is_own_earlier_write(&cluster("7")), "the last write");
        assert!(v.is_own_last_write(&cluster("7")));
        assert!(!v.is_own_earlier_write(&cluster("4")), "not the operator's");
        assert!(
            !v.is_own_earlier_write(&cluster("8")),
            "someone wrote after"
        );
        // Only the last few are remembered.
        for version in ["8", "9", "10"] {
            v.wrote(&cluster("7"), version);
        }
        assert!(!v.is_own_earlier_write(&cluster("6")));
        assert!(v.is_own_earlier_write(&cluster("7")));
        v.drop_cluster(&cluster("10"));
        assert!(!v.is_own_earlier_write(&cluster("9")));
    }
}

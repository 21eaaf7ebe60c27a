//! The Ready check's memory between turns. The check reads the services' Secrets and the
//! objects they are rendered from (the operator may not watch Secrets); the turn that starts
//! because of the operator's own status write, right after a full check, would read them all
//! again for nothing. So a Ready cluster whose object is still at the version the operator
//! left it, with no host or template event concerning it since and a full check not long ago, is checked from memory
//! (the scheduling decision and the drift the watches saw) without reads. Any other change to
//! the SIPCluster (a poke, a spec change), a host or template event concerning it, or the age
//! of the last full check makes the next check read everything again. Saves 12 GETs a cluster
//! (ARCHITECTURE.md, "What the controller remembers").

use std::time::{Duration, Instant};

use super::per_cluster::{PerCluster, key};
use crate::api::SIPCluster;

/// A full check at least this often, whatever the memory says (the resync is 300 s).
const FULL_CHECK_AT_LEAST_EVERY: Duration = Duration::from_secs(150);

pub type Verified = PerCluster<Entry>;

pub struct Entry {
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

impl Verified {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::tenant_at as cluster;

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
}

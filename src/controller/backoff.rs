//! How long a cluster that cannot progress waits before it is worked again: a delay growing
//! with its consecutive failures (jittered, capped), and a hold that its own status writes
//! cannot bypass (each is a watch event); only a new spec generation or a host change can.
//! Kept by the cluster's uid: a cluster deleted and created again under its name is a new
//! cluster, and owes nothing of the old one's failures (the old one's entries go at its
//! decommissioning).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::api::SIPCluster;

/// Retry delay after `attempts` consecutive failures: 2^n seconds, n capped at 8 (256 s), plus
/// under a second of jitter so clusters that failed together do not retry together.
pub fn delay(attempts: u32) -> Duration {
    let base = 2u64.saturating_pow(attempts.min(8)).min(300);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis() as u64 % 1000);
    Duration::from_millis(base * 1000 + jitter)
}

/// What a held cluster was held at.
struct Hold {
    until: Instant,
    generation: Option<i64>,
    touched: u64,
}

/// Per-cluster failure counts and holds.
#[derive(Default)]
pub struct Backoff {
    attempts: Mutex<HashMap<Key, u32>>,
    holds: Mutex<HashMap<Key, Hold>>,
}

/// A cluster's uid (its namespace and name before it has one: only an object never stored).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key(String);

fn key(cluster: &SIPCluster) -> Key {
    Key(match &cluster.metadata.uid {
        Some(uid) => uid.clone(),
        None => ObjectRef::from_obj(cluster).to_string(),
    })
}

impl Backoff {
    /// One more failure: the delay before the next try.
    pub fn fail(&self, cluster: &SIPCluster) -> Duration {
        let mut attempts = crate::sync::lock(&self.attempts);
        let n = attempts.entry(key(cluster)).or_default();
        *n += 1;
        delay(*n)
    }

    /// A write conflict (someone wrote in between): decide again on fresh data soon, 200 ms
    /// doubling with each conflict in a row, so a cluster fought over does not spin.
    pub fn conflict(&self, cluster: &SIPCluster) -> Duration {
        let mut attempts = crate::sync::lock(&self.attempts);
        let n = attempts.entry(key(cluster)).or_default();
        *n += 1;
        let fast = Duration::from_millis(200) * 2u32.saturating_pow((*n - 1).min(8));
        fast.min(delay(*n))
    }

    /// A failure that holds the cluster: until the delay passes, it is not worked unless its
    /// spec changes or an event of what it reads concerns it (`touched`, its count of them,
    /// moves) meanwhile.
    pub fn hold(&self, cluster: &SIPCluster, touched: u64) -> Duration {
        let wait = self.fail(cluster);
        let mut holds = crate::sync::lock(&self.holds);
        holds.insert(
            key(cluster),
            Hold {
                until: Instant::now() + wait,
                generation: cluster.metadata.generation,
                touched,
            },
        );
        wait
    }

    /// How long the cluster must still wait, if it is held and nothing it waits for changed.
    pub fn held(&self, cluster: &SIPCluster, touched: u64) -> Option<Duration> {
        let holds = crate::sync::lock(&self.holds);
        let hold = holds.get(&key(cluster))?;
        let now = Instant::now();
        let unchanged = hold.generation == cluster.metadata.generation && hold.touched == touched;
        (unchanged && hold.until > now).then(|| hold.until - now)
    }

    /// The cluster progressed, or is gone: its count and hold are forgotten.
    pub fn reset(&self, cluster: &SIPCluster) {
        let key = key(cluster);
        let mut attempts = crate::sync::lock(&self.attempts);
        attempts.remove(&key);
        let mut holds = crate::sync::lock(&self.holds);
        holds.remove(&key);
    }

    /// Keeps the clusters whose uid `alive` says exists; how many it holds then.
    pub fn retain(&self, alive: &dyn Fn(&str) -> bool) -> usize {
        let mut attempts = crate::sync::lock(&self.attempts);
        attempts.retain(|k, _| alive(&k.0));
        let mut holds = crate::sync::lock(&self.holds);
        holds.retain(|k, _| alive(&k.0));
        attempts.len().max(holds.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, generation: i64) -> SIPCluster {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some("tenants".into());
        c.metadata.generation = Some(generation);
        c.metadata.uid = Some(format!("uid-{name}"));
        c
    }

    #[test]
    fn a_cluster_created_again_under_its_name_owes_nothing_of_the_old_ones_failures() {
        let backoff = Backoff::default();
        let old = cluster("t", 1);
        for _ in 0..6 {
            backoff.hold(&old, 7);
        }
        assert!(backoff.held(&old, 7).is_some());
        let mut new = cluster("t", 1);
        new.metadata.uid = Some("uid-t-again".into());
        assert!(
            backoff.held(&new, 7).is_none(),
            "same name, same generation, new uid"
        );
        assert!(
            backoff.fail(&new) < Duration::from_secs(3),
            "its first failure"
        );
    }

    #[test]
    fn delays_grow_with_failures_and_stop_growing_after_eight() {
        let cases = [
            (1, 2, "first"),
            (3, 8, "third"),
            (8, 256, "eighth"),
            (20, 256, "capped"),
        ];
        for (attempts, low, msg) in cases {
            let d = delay(attempts);
            assert!(
                d >= Duration::from_secs(low) && d < Duration::from_secs(low + 1),
                "{msg}: {d:?}"
            );
        }
    }

    #[test]
    fn conflicts_retry_soon_then_back_off() {
        let backoff = Backoff::default();
        let c = cluster("a", 1);
        let waits: Vec<Duration> = (0..4).map(|_| backoff.conflict(&c)).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600].map(Duration::from_millis),
            "each conflict in a row waits twice as long"
        );
        backoff.reset(&c);
        assert_eq!(
            backoff.conflict(&c),
            Duration::from_millis(200),
            "progress resets it"
        );
    }

    #[test]
    fn a_hold_lasts_until_the_spec_or_what_it_reads_changes() {
        let backoff = Backoff::default();
        let c = cluster("a", 1);
        let wait = backoff.hold(&c, 7);
        assert!(wait >= Duration::from_secs(2));
        let cases = [
            (
                cluster("a", 1),
                7,
                true,
                "its own status write changes nothing",
            ),
            (
                cluster("a", 2),
                7,
                false,
                "a new generation lets it through",
            ),
            (
                cluster("a", 1),
                8,
                false,
                "an event of a host it reads lets it through",
            ),
            (cluster("b", 1), 7, false, "other clusters are not held"),
        ];
        for (c, touched, held, msg) in cases {
            assert_eq!(backoff.held(&c, touched).is_some(), held, "{msg}");
        }
        let again = backoff.hold(&c, 7);
        assert!(
            again >= Duration::from_secs(4),
            "the second failure waits longer: {again:?}"
        );
        backoff.reset(&c);
        assert!(backoff.held(&c, 7).is_none());
        assert!(
            backoff.fail(&c) < Duration::from_secs(3),
            "reset starts over"
        );
    }
}

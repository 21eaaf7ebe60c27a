//! The versions the operator's own last writes produced of each SIPCluster (its status, or the
//! finalizer it adds). A turn whose cached object is the last of them skips the fresh read:
//! the cache is then as fresh as a read would be. A turn started by the event of an earlier one
//! (its later write's event is on its way and starts a turn of its own) is skipped without a
//! read. Saves 2 GETs a cluster (ARCHITECTURE.md, "What the controller remembers").

use super::per_cluster::{PerCluster, key};
use crate::api::SIPCluster;

/// How many versions are remembered: a turn writes the finalizer and a status write or three,
/// and only the latest events can still be on their way. A version that fell out costs only
/// what it cost before: the turn it starts reads the cluster again.
const WRITES_REMEMBERED: usize = 4;

/// The resourceVersions of each SIPCluster's last writes by this operator, newest last.
pub type OwnWrites = PerCluster<Vec<String>>;

impl OwnWrites {
    /// Records the version the operator's write (status or finalizer) produced.
    pub fn wrote(&self, cluster: &SIPCluster, version: &str) {
        let mut written = self.map();
        let versions = written.entry(key(cluster)).or_default();
        if versions.len() == WRITES_REMEMBERED {
            versions.remove(0);
        }
        versions.push(version.to_string());
    }

    /// Whether `cached` is the object as the operator's last write left it: then the
    /// cache is as fresh as a read would be (anyone's later write comes as an event of its
    /// own), and the turn need not read the SIPCluster again.
    pub fn is_last(&self, cached: &SIPCluster) -> bool {
        cached
            .metadata
            .resource_version
            .as_ref()
            .is_some_and(|v| self.map().get(&key(cached)).and_then(|w| w.last()) == Some(v))
    }

    /// Whether `cached` is a version an earlier write of the operator produced, which its
    /// last write superseded: the watch has yet to bring that write, and its event starts a
    /// turn of its own, so a turn on this one would only read the object again.
    pub fn is_earlier(&self, cached: &SIPCluster) -> bool {
        let Some(version) = cached.metadata.resource_version.as_ref() else {
            return false;
        };
        self.map().get(&key(cached)).is_some_and(|w| {
            w.split_last()
                .is_some_and(|(last, earlier)| last != version && earlier.contains(version))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::tenant_at as cluster;

    #[test]
    fn the_cache_is_fresh_only_at_the_operators_own_last_write() {
        let v = OwnWrites::default();
        assert!(!v.is_last(&cluster("5")), "nothing written yet");
        v.wrote(&cluster("4"), "5");
        assert!(v.is_last(&cluster("5")));
        assert!(!v.is_last(&cluster("4")), "the cache lags behind the write");
        assert!(!v.is_last(&cluster("6")), "someone wrote after");
        v.forget(&cluster("5"));
        assert!(!v.is_last(&cluster("5")));
    }

    #[test]
    fn a_version_the_operators_later_write_superseded_is_known_as_such() {
        let v = OwnWrites::default();
        assert!(!v.is_earlier(&cluster("5")), "nothing written yet");
        for version in ["5", "6", "7"] {
            v.wrote(&cluster("4"), version);
        }
        assert!(v.is_earlier(&cluster("5")));
        assert!(v.is_earlier(&cluster("6")));
        assert!(!v.is_earlier(&cluster("7")), "the last write");
        assert!(v.is_last(&cluster("7")));
        assert!(!v.is_earlier(&cluster("4")), "not the operator's");
        assert!(!v.is_earlier(&cluster("8")), "someone wrote after");
        // Only the last few are remembered.
        for version in ["8", "9", "10"] {
            v.wrote(&cluster("7"), version);
        }
        assert!(!v.is_earlier(&cluster("6")));
        assert!(v.is_earlier(&cluster("7")));
        v.forget(&cluster("10"));
        assert!(!v.is_earlier(&cluster("9")));
    }
}

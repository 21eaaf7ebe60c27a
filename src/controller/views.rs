//! The scheduler's views of the cached hosts, kept between turns: building a view (its key, the
//! flags read from annotations and status) for 10,000 hosts took tens of milliseconds of every
//! Gathering and Ready check. A host's view is rebuilt only when its resourceVersion changed,
//! and shares the cached host's labels rather than copying them.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState as FastHash;

use crate::api::BareMetalHost;
use crate::scheduling::HostView;

#[derive(Default)]
pub struct HostViews {
    /// By a hash of the host's uid (the uid itself is in the view; a copy of it as the key
    /// would cost as much again at 10,000 hosts): the view, and the last snapshot that saw it.
    by_uid: HashMap<u64, Entry, FastHash>,
    snapshots: u64,
}

struct Entry {
    view: Arc<HostView>,
    seen: u64,
}

impl HostViews {
    /// A view of each host, in order; views of hosts no longer given are forgotten. Updated in
    /// place: a turn on 10,000 unchanged hosts costs a lookup each, nothing allocated. A view
    /// is current while it reads its labels from the very object the cache holds: the cache
    /// replaces a host's object when the host changes.
    pub fn snapshot(&mut self, hosts: &[Arc<BareMetalHost>]) -> Vec<Arc<HostView>> {
        self.snapshots += 1;
        let now = self.snapshots;
        let mut seen = 0;
        let views = hosts
            .iter()
            .map(|host| {
                let Some(uid) = host.metadata.uid.as_deref() else {
                    return Arc::new(HostView::of_cached(host));
                };
                seen += 1;
                let key = uid_hash(uid);
                match self.by_uid.get_mut(&key) {
                    // Another uid with the same hash (never seen in practice) replaces it.
                    Some(entry) if entry.view.uid.as_deref() == Some(uid) => {
                        if !entry.view.labels.shares(host) {
                            entry.view = Arc::new(HostView::of_cached(host));
                        }
                        entry.seen = now;
                        entry.view.clone()
                    }
                    _ => {
                        let view = Arc::new(HostView::of_cached(host));
                        let entry = Entry {
                            view: view.clone(),
                            seen: now,
                        };
                        self.by_uid.insert(key, entry);
                        view
                    }
                }
            })
            .collect();
        if self.by_uid.len() > seen {
            self.by_uid.retain(|_, e| e.seen == now);
        }
        views
    }
}

fn uid_hash(uid: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, uid: &str, version: &str, rack: &str) -> Arc<BareMetalHost> {
        let mut h = BareMetalHost::new(name, Default::default());
        h.metadata.namespace = Some("metal3".into());
        h.metadata.uid = Some(uid.into());
        h.metadata.resource_version = Some(version.into());
        h.metadata.labels = Some([("rack".to_string(), rack.to_string())].into());
        Arc::new(h)
    }

    #[test]
    fn a_view_is_rebuilt_only_when_its_host_changed() {
        let mut views = HostViews::default();
        // The cache keeps a host's object until the host changes.
        let a = host("a", "1", "10", "r1");
        let first = views.snapshot(&[a.clone(), host("b", "2", "11", "r2")]);
        let second = views.snapshot(&[a.clone(), host("b", "2", "12", "r9")]);
        assert!(
            Arc::ptr_eq(&first[0], &second[0]),
            "unchanged host: same view"
        );
        assert!(!Arc::ptr_eq(&first[1], &second[1]));
        assert_eq!(
            second[1].labels["rack"], "r9",
            "the changed host is seen as it is now"
        );
        assert_eq!(second[1].key.name(), "b");
    }

    #[test]
    fn hosts_gone_are_forgotten_and_a_recreated_host_is_new() {
        let mut views = HostViews::default();
        views.snapshot(&[host("a", "1", "10", "r1"), host("b", "2", "11", "r2")]);
        let only_b = views.snapshot(&[host("b", "2", "11", "r2")]);
        assert_eq!(views.by_uid.len(), 1);
        assert_eq!(only_b.len(), 1);
        let recreated = views.snapshot(&[host("b", "3", "11", "r2")]);
        assert_eq!(recreated[0].uid.as_deref(), Some("3"));
        assert!(!Arc::ptr_eq(&only_b[0], &recreated[0]));
    }
}

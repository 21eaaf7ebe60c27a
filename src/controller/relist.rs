//! What a watch has seen, so that a relist reports what was deleted while the watch was not
//! looking. kube's watcher starts over with a fresh list when its watch falls too far behind
//! (410 Gone) or reconnects: it replays what exists and says nothing of what is gone, so a
//! Deployment deleted in that gap would never count as drift, and a host deleted in it would
//! keep its fingerprint (`relevance.rs`).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher::Event;

/// What a watch says exists, by key, with a value for each (what a deletion is judged by);
/// while a (re)list runs, the keys it has brought so far.
pub struct Listed<K, V> {
    known: HashMap<K, V>,
    listing: Option<HashSet<K>>,
}

impl<K, V> Default for Listed<K, V> {
    fn default() -> Self {
        Listed {
            known: HashMap::new(),
            listing: None,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Listed<K, V> {
    /// A (re)list begins.
    pub fn list_started(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// `key` exists, with `value` now: the value before.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(listing) = &mut self.listing {
            listing.insert(key.clone());
        }
        self.known.insert(key, value)
    }

    /// `key` was deleted: its last value, if it was known.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.known.remove(key)
    }

    /// The list is complete: what was known and it lacks, deleted meanwhile, is forgotten and
    /// returned.
    pub fn list_done(&mut self) -> Vec<(K, V)> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<K> = self
            .known
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|k| self.known.remove(&k).map(|v| (k, v)))
            .collect()
    }
}

/// The services' objects a metadata watch has seen.
pub type Seen = Listed<(String, String), ObjectMeta>;

impl Seen {
    /// What the event says of each object: its metadata, and whether it is gone.
    pub fn event<T: Resource>(&mut self, event: &Event<T>) -> Vec<(ObjectMeta, bool)> {
        match event {
            Event::Init => {
                self.list_started();
                Vec::new()
            }
            Event::InitApply(o) | Event::Apply(o) => {
                let meta = o.meta().clone();
                self.insert(key(&meta), meta.clone());
                vec![(meta, false)]
            }
            Event::InitDone => self
                .list_done()
                .into_iter()
                .map(|(_, meta)| (meta, true))
                .collect(),
            Event::Delete(o) => {
                let meta = o.meta().clone();
                self.remove(&key(&meta));
                vec![(meta, true)]
            }
        }
    }
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;

    use super::*;

    fn deployment(name: &str, rv: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        }
    }

    /// (name, gone) of what the events say.
    fn said(seen: &mut Seen, events: Vec<Event<Deployment>>) -> Vec<(String, bool)> {
        events
            .iter()
            .flat_map(|e| seen.event(e))
            .map(|(m, gone)| (m.name.unwrap_or_default(), gone))
            .collect()
    }

    /// A (re)list replaying exactly `names`.
    fn listing(names: &[&str]) -> Vec<Event<Deployment>> {
        std::iter::once(Event::Init)
            .chain(names.iter().map(|n| Event::InitApply(deployment(n, "1"))))
            .chain(std::iter::once(Event::InitDone))
            .collect()
    }

    #[test]
    fn a_relist_reports_what_was_deleted_while_the_watch_was_away() {
        let mut seen = Seen::default();
        let mut events = listing(&["a", "b"]);
        events.push(Event::Apply(deployment("c", "3")));
        let first = said(&mut seen, events);
        assert_eq!(
            first,
            [
                ("a".into(), false),
                ("b".into(), false),
                ("c".into(), false)
            ]
        );
        // The watch fell behind; meanwhile b and c were deleted and d created.
        let relisted = said(&mut seen, listing(&["a", "d"]));
        let mut gone: Vec<_> = relisted.iter().filter(|(_, g)| *g).cloned().collect();
        gone.sort();
        assert_eq!(gone, [("b".into(), true), ("c".into(), true)]);
        assert!(relisted.contains(&("d".into(), false)));
        // Reported once: a later relist of the same objects finds nothing more gone.
        let again = said(&mut seen, listing(&["a", "d"]));
        assert!(again.iter().all(|(_, g)| !g), "{again:?}");
    }

    #[test]
    fn a_deletion_seen_live_is_not_reported_again_by_the_relist() {
        let mut seen = Seen::default();
        let mut events = listing(&["a"]);
        events.push(Event::Delete(deployment("a", "2")));
        events.extend(listing(&[]));
        let events = said(&mut seen, events);
        assert_eq!(events, [("a".into(), false), ("a".into(), true)]);
    }
}

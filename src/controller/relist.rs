//! Which of the services' objects a watch has seen, so that a relist reports what was deleted
//! while the watch was not looking. kube's watcher starts over with a fresh list when its watch
//! falls too far behind (410 Gone) or reconnects: it replays what exists and says nothing of
//! what is gone, so a Deployment deleted in that gap would never count as drift.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher::Event;

type Key = (String, String);

#[derive(Default)]
pub struct Seen {
    /// Every object the watch says exists, with its last metadata (what a deletion is judged by).
    known: HashMap<Key, ObjectMeta>,
    /// While a relist runs: the objects it has replayed so far.
    relisting: Option<HashSet<Key>>,
}

impl Seen {
    /// What the event says of each object: its metadata, and whether it is gone.
    pub fn event<T: Resource>(&mut self, event: &Event<T>) -> Vec<(ObjectMeta, bool)> {
        match event {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                let meta = o.meta().clone();
                if let Some(replayed) = self.relisting.as_mut() {
                    replayed.insert(key(&meta));
                }
                self.known.insert(key(&meta), meta.clone());
                vec![(meta, false)]
            }
            Event::InitDone => {
                let Some(replayed) = self.relisting.take() else {
                    return Vec::new();
                };
                let gone: Vec<Key> = self
                    .known
                    .keys()
                    .filter(|k| !replayed.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|k| self.known.remove(&k))
                    .map(|meta| (meta, true))
                    .collect()
            }
            Event::Apply(o) => {
                let meta = o.meta().clone();
                self.known.insert(key(&meta), meta.clone());
                vec![(meta, false)]
            }
            Event::Delete(o) => {
                let meta = o.meta().clone();
                self.known.remove(&key(&meta));
                vec![(meta, true)]
            }
        }
    }
}

fn key(meta: &ObjectMeta) -> Key {
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

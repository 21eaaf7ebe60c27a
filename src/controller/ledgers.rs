//! Every SIPCluster's ledger, from a watch, and whether that cache can stand in for Gathering's
//! fresh read. The claim rule asks Gathering to see the claims the operator has just written;
//! a LIST of every SIPCluster does, and costs a request and time that grow with the clusters.
//! The watch sees them too, a moment later: so the operator remembers the version of its
//! last write that changed a ledger's claims, for each cluster, until the watch brings that
//! version (or the cluster's deletion). While none is outstanding, the cache holds every
//! claim the operator wrote, and Gathering reads it instead of listing.
//!
//! A write is marked outstanding before it is sent, with the claims it carries: a turn dropped
//! while the request is in flight (the turn's time limit, a client timeout) may have written
//! them, and no answer will say so. Such a mark is settled when the watch brings the cluster
//! with those claims, by the cluster's next write, or by its deletion; until then Gathering
//! lists.
//!
//! Claims written by someone else (a replica that lost the lease, a person editing status)
//! are seen as soon as the watch brings them, a LIST a moment earlier. Neither read fences
//! such a writer: the guarded label patch does (`hosts.rs`), and, where other operators share
//! the pool, the confirmation of each claim (`confirmations.rs`, fed by this watch). The watch
//! starts once this replica holds the lease, so its first list already holds every claim
//! written before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::confirmations::Confirmations;
use super::per_cluster::key;
use super::watches::Wakers;
use crate::api::{BareMetalHost, HostRecord, SIPCluster};
use crate::scheduling::{ClusterKey, HostKey};

/// Versions of each cluster the watch brought, remembered in case the watch is faster than
/// the answer to the write that produced one (then no write is outstanding).
const VERSIONS_SEEN: usize = 4;

pub struct Ledgers {
    /// Every SIPCluster in the cluster, whichever namespace the controller serves.
    pub store: Store<SIPCluster>,
    lag: Mutex<Lag>,
    /// The rivals each claim met as the watch brought it, when other operators may claim
    /// from the same pool (`confirmations.rs`).
    pub confirmations: Option<Confirmations>,
}

/// A claim-changing write the watch has not shown yet.
#[derive(Debug, PartialEq)]
enum Outstanding {
    /// Answered: the version it produced.
    Version(String),
    /// Sent, not (yet) answered: the claims it carries.
    Claims(HashSet<HostKey>),
}

#[derive(Default)]
struct Lag {
    /// For each cluster, the operator's last claim-changing write that the watch has not
    /// brought yet.
    outstanding: HashMap<(String, String), Outstanding>,
    /// The last versions the watch brought of each cluster.
    seen: HashMap<(String, String), VecDeque<String>>,
    /// While the watch lists again: the versions listed so far, which its cache holds only
    /// once the list is complete.
    relisted: Option<Vec<Listed>>,
}

impl Lag {
    /// The cache holds `version` of `key`, which claims `claimed`.
    fn holds(&mut self, key: (String, String), version: String, claimed: HashSet<HostKey>) {
        let settled = match self.outstanding.get(&key) {
            Some(Outstanding::Version(v)) => *v == version,
            Some(Outstanding::Claims(c)) => *c == claimed,
            None => false,
        };
        if settled {
            self.outstanding.remove(&key);
        }
        let seen = self.seen.entry(key).or_default();
        if seen.len() == VERSIONS_SEEN {
            seen.pop_front();
        }
        seen.push_back(version);
    }
}

impl Ledgers {
    pub fn new(store: Store<SIPCluster>) -> Self {
        Ledgers {
            store,
            lag: Mutex::default(),
            confirmations: None,
        }
    }

    /// Ledgers whose claims are confirmed: this operator serves one namespace, and others may
    /// choose from the same hosts.
    pub fn confirming(store: Store<SIPCluster>) -> Self {
        Ledgers {
            confirmations: Some(Confirmations::default()),
            ..Ledgers::new(store)
        }
    }

    fn lag(&self) -> std::sync::MutexGuard<'_, Lag> {
        crate::sync::lock(&self.lag)
    }

    /// A status write of the operator's that turns `before`'s ledger into `after`'s is about
    /// to be sent: outstanding from now, whatever becomes of the turn.
    pub fn writing(&self, cluster: &SIPCluster, before: &[HostRecord], after: &[HostRecord]) {
        let after = claims(after);
        if claims(before) == after {
            return;
        }
        self.lag()
            .outstanding
            .insert(key(cluster), Outstanding::Claims(after));
    }

    /// A status write of the operator's that turned `before`'s ledger into `after`'s produced
    /// `version`. Only a change of what the ledger claims matters: an older version with the
    /// same claims answers Gathering the same.
    pub fn wrote(
        &self,
        cluster: &SIPCluster,
        before: &[HostRecord],
        after: &[HostRecord],
        version: &str,
    ) {
        if claims(before) == claims(after) {
            return;
        }
        let key = key(cluster);
        let mut lag = self.lag();
        if lag
            .seen
            .get(&key)
            .is_some_and(|s| s.iter().any(|v| v == version))
        {
            lag.outstanding.remove(&key);
        } else {
            lag.outstanding
                .insert(key, Outstanding::Version(version.to_string()));
        }
    }

    /// An event of the watch, after its reflector took it: an applied or deleted object is in
    /// the cache at once, but a (re)list's objects only when the list is done (the reflector
    /// swaps them in at `InitDone`).
    pub fn observe(&self, event: &watcher::Event<SIPCluster>) {
        self.confirm(event);
        let mut lag = self.lag();
        match event {
            watcher::Event::Apply(c) => {
                if let Some(version) = c.metadata.resource_version.clone() {
                    lag.holds(key(c), version, ledger_claims(c));
                }
            }
            watcher::Event::Delete(c) => {
                let key = key(c);
                lag.outstanding.remove(&key);
                lag.seen.remove(&key);
            }
            watcher::Event::Init => lag.relisted = Some(Vec::new()),
            watcher::Event::InitApply(c) => {
                if let (Some(listed), Some(version)) =
                    (lag.relisted.as_mut(), c.metadata.resource_version.clone())
                {
                    listed.push((key(c), version, ledger_claims(c)));
                }
            }
            watcher::Event::InitDone => {
                for (key, version, claimed) in lag.relisted.take().unwrap_or_default() {
                    lag.holds(key, version, claimed);
                }
            }
        }
    }

    /// The rivals of the claims an event brings, met in the cache as of that event. A list's
    /// objects are in the cache only once it is complete: then each is confirmed against
    /// the whole list, which holds every write before it (and maybe later ones).
    fn confirm(&self, event: &watcher::Event<SIPCluster>) {
        let Some(confirmations) = &self.confirmations else {
            return;
        };
        match event {
            watcher::Event::Apply(c) => confirmations.observe(c, &self.store.state()),
            watcher::Event::Delete(c) => confirmations.forget(c),
            watcher::Event::InitDone => {
                let cache = self.store.state();
                for c in &cache {
                    confirmations.observe(c, &cache);
                }
            }
            watcher::Event::Init => confirmations.forget_all(),
            watcher::Event::InitApply(_) => {}
        }
    }

    /// Every SIPCluster, for its ledger, when the controller's own cache holds one namespace's:
    /// this watch fills `ledgers.store` and shows `ledgers` its events.
    ///
    /// A ledger that lets go hosts of this operator's wakes the clusters waiting in Gathering:
    /// the other
    /// operators' releases are no events of this one's otherwise, and a waiting cluster that
    /// saw the hosts' labels go (its wake-up) while their ledger still held them would wait
    /// out its backoff.
    pub fn watch(
        ledgers: &Arc<Ledgers>,
        api: Api<SIPCluster>,
        writer: Writer<SIPCluster>,
        waiting: Waiting,
        lag: Option<std::time::Duration>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let ledgers = ledgers.clone();
        let Waiting { wakers, hosts } = waiting;
        let mut held = Held::default();
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let events = match lag {
            None => events.boxed(),
            // A failpoint (`Settings::ledger_lag`): every event reaches the cache `lag` after
            // it arrived, as from a slow watch, so the tests meet the window the outstanding
            // marks cover. Stamped as they arrive (a task of its own), so lags do not add up.
            Some(lag) => {
                let (stamped, arrived) = futures::channel::mpsc::unbounded();
                tokio::spawn(
                    events
                        .map(|e| Ok((tokio::time::Instant::now(), e)))
                        .forward(stamped),
                );
                arrived
                    .then(move |(at, event)| async move {
                        tokio::time::sleep_until(at + lag).await;
                        event
                    })
                    .boxed()
            }
        };
        reflector(writer, events).for_each(move |event| {
            super::watches::cluster_event(&wakers.metrics, Some(&ledgers), &event);
            let usable = |host: &HostKey| {
                let host = ObjectRef::new(host.name()).within(host.namespace());
                hosts.get(&host).is_some()
            };
            if let Ok(event) = &event
                && held.frees(event, usable)
            {
                wakers.wake(gathering(&wakers.clusters));
            }
            std::future::ready(())
        })
    }

    /// Whether the cache holds every claim the operator wrote, but perhaps `cluster`'s own
    /// (which Gathering takes from the turn, not from the cache).
    pub fn caught_up_but(&self, cluster: &ClusterKey) -> bool {
        self.lag()
            .outstanding
            .keys()
            .all(|(namespace, name)| *namespace == cluster.namespace && *name == cluster.name)
    }
}

/// Whom a ledger's release wakes: the served clusters waiting in Gathering, when a host let go
/// is one of the operator's.
pub struct Waiting {
    pub wakers: Wakers,
    pub hosts: Store<BareMetalHost>,
}

/// What each ledger claimed when the watch last brought it, to see hosts let go.
#[derive(Default)]
struct Held(HashMap<(String, String), HashSet<HostKey>>);

impl Held {
    /// Whether `event` shows a ledger letting go a host that `usable` says this operator may
    /// choose (a release, a deletion; or a list, which may have missed either).
    fn frees(
        &mut self,
        event: &watcher::Event<SIPCluster>,
        usable: impl Fn(&HostKey) -> bool,
    ) -> bool {
        match event {
            watcher::Event::Apply(c) => {
                let now = ledger_claims(c);
                let before = self.0.insert(key(c), now.clone()).unwrap_or_default();
                before.difference(&now).any(usable)
            }
            watcher::Event::Delete(c) => self
                .0
                .remove(&key(c))
                .is_some_and(|before| before.iter().any(usable)),
            watcher::Event::Init => {
                self.0.clear();
                false
            }
            watcher::Event::InitApply(c) => {
                self.0.insert(key(c), ledger_claims(c));
                false
            }
            watcher::Event::InitDone => true,
        }
    }
}

/// The served clusters choosing hosts (or waiting for them).
fn gathering(clusters: &Store<SIPCluster>) -> Vec<ObjectRef<SIPCluster>> {
    clusters
        .state()
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(crate::api::Phase::Gathering))
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// A cluster as a (re)list brought it: its key, version and claims.
type Listed = ((String, String), String, HashSet<HostKey>);

/// The hosts a cluster's ledger claims.
fn ledger_claims(cluster: &SIPCluster) -> HashSet<HostKey> {
    cluster
        .status
        .as_ref()
        .map(|s| claims(&s.hosts))
        .unwrap_or_default()
}

/// The hosts a ledger claims.
fn claims(ledger: &[HostRecord]) -> HashSet<HostKey> {
    ledger
        .iter()
        .filter(|r| r.state.claims())
        .map(HostKey::of_record)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HostState;
    use crate::controller::phases::test_record as record;

    fn cluster(name: &str, version: &str) -> SIPCluster {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some("sip".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    fn ledgers() -> Ledgers {
        Ledgers::new(kube::runtime::reflector::store().0)
    }

    fn me() -> ClusterKey {
        ClusterKey::new("sip", "me")
    }

    /// The operator's write of `version` that made cluster `name` claim `h1`.
    fn claim_written(ledgers: &Ledgers, name: &str, version: &str) {
        let chosen = [record("h1", HostState::Chosen)];
        ledgers.wrote(&cluster(name, "1"), &[], &chosen, version);
    }

    #[test]
    fn a_claim_written_is_outstanding_until_the_watch_brings_its_version() {
        let ledgers = ledgers();
        claim_written(&ledgers, "a", "2");
        assert!(!ledgers.caught_up_but(&me()));
        ledgers.observe(&watcher::Event::Apply(cluster("a", "1")));
        assert!(!ledgers.caught_up_but(&me()), "an older version is not it");
        ledgers.observe(&watcher::Event::Apply(cluster("a", "2")));
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn a_version_the_watch_brought_before_the_write_returned_is_not_outstanding() {
        let ledgers = ledgers();
        ledgers.observe(&watcher::Event::Apply(cluster("a", "2")));
        claim_written(&ledgers, "a", "2");
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn a_deletion_settles_the_clusters_writes() {
        let ledgers = ledgers();
        claim_written(&ledgers, "a", "2");
        ledgers.observe(&watcher::Event::Delete(cluster("a", "1")));
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn only_writes_that_change_the_claims_wait_for_the_watch() {
        let ledgers = ledgers();
        let chosen = [record("h1", HostState::Chosen)];
        let labeled = [record("h1", HostState::Labeled)];
        ledgers.wrote(&cluster("a", "1"), &chosen, &labeled, "2");
        assert!(
            ledgers.caught_up_but(&me()),
            "h1 was claimed before and after"
        );
        let unusable = [record("h1", HostState::Unusable)];
        ledgers.wrote(&cluster("a", "2"), &labeled, &unusable, "3");
        assert!(!ledgers.caught_up_but(&me()), "h1 released");
    }

    #[test]
    fn the_clusters_own_write_does_not_hold_its_gathering() {
        let ledgers = ledgers();
        claim_written(&ledgers, "me", "2");
        assert!(ledgers.caught_up_but(&me()));
        let other = ClusterKey::new("sip", "other");
        assert!(!ledgers.caught_up_but(&other));
    }

    #[test]
    fn a_later_write_replaces_the_one_outstanding() {
        let ledgers = ledgers();
        let a = cluster("a", "1");
        ledgers.wrote(&a, &[], &[record("h1", HostState::Chosen)], "2");
        ledgers.wrote(&a, &[record("h1", HostState::Chosen)], &[], "3");
        ledgers.observe(&watcher::Event::Apply(cluster("a", "2")));
        assert!(
            !ledgers.caught_up_but(&me()),
            "the release is still on its way"
        );
        ledgers.observe(&watcher::Event::Apply(cluster("a", "3")));
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn a_relisted_version_counts_once_the_list_is_in_the_cache() {
        let ledgers = ledgers();
        claim_written(&ledgers, "a", "2");
        ledgers.observe(&watcher::Event::Init);
        ledgers.observe(&watcher::Event::InitApply(cluster("a", "2")));
        assert!(
            !ledgers.caught_up_but(&me()),
            "the reflector holds the list back until it is complete"
        );
        ledgers.observe(&watcher::Event::InitDone);
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn a_ledger_letting_a_host_go_wakes_the_waiting_and_one_taking_more_does_not() {
        let mut held = Held::default();
        let apply = |c| watcher::Event::Apply(c);
        let any = |_: &HostKey| true;
        assert!(!held.frees(&apply(with_claims("a", "1", &["h1"])), any));
        assert!(!held.frees(&apply(with_claims("a", "2", &["h1", "h2"])), any));
        assert!(!held.frees(&apply(with_claims("b", "3", &[])), any));
        assert!(
            held.frees(&apply(with_claims("a", "4", &["h2"])), any),
            "h1 let go"
        );
        assert!(!held.frees(&watcher::Event::Delete(cluster("b", "3")), any));
        assert!(held.frees(&watcher::Event::Delete(cluster("a", "4")), any));
        assert!(!held.frees(&watcher::Event::Init, any));
        assert!(
            held.frees(&watcher::Event::InitDone, any),
            "a list may hide a release"
        );
    }

    #[test]
    fn only_hosts_this_operator_may_choose_wake_its_waiting_clusters() {
        let mut held = Held::default();
        let apply = |c| watcher::Event::Apply(c);
        let h2_only = |h: &HostKey| h.name() == "h2";
        held.frees(&apply(with_claims("a", "1", &["h1", "h2"])), h2_only);
        assert!(!held.frees(&apply(with_claims("a", "2", &["h2"])), h2_only));
        assert!(held.frees(&apply(with_claims("a", "3", &[])), h2_only));
        held.frees(&apply(with_claims("b", "4", &["h1"])), h2_only);
        assert!(!held.frees(&watcher::Event::Delete(cluster("b", "4")), h2_only));
    }

    fn with_claims(name: &str, version: &str, hosts: &[&str]) -> SIPCluster {
        let mut c = cluster(name, version);
        c.status = Some(crate::api::SIPClusterStatus {
            hosts: hosts.iter().map(|h| record(h, HostState::Chosen)).collect(),
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_write_dropped_in_flight_stays_outstanding_until_the_watch_shows_its_claims() {
        let ledgers = ledgers();
        // The turn sends a claim of h1 and is dropped before the answer: no `wrote`.
        ledgers.writing(&cluster("a", "1"), &[], &[record("h1", HostState::Chosen)]);
        assert!(!ledgers.caught_up_but(&me()), "the claim may have landed");
        ledgers.observe(&watcher::Event::Apply(with_claims("a", "2", &[])));
        assert!(
            !ledgers.caught_up_but(&me()),
            "a version without the claim does not settle it"
        );
        ledgers.observe(&watcher::Event::Apply(with_claims("a", "3", &["h1"])));
        assert!(ledgers.caught_up_but(&me()));
    }

    #[test]
    fn a_write_dropped_in_flight_is_settled_by_the_clusters_next_write_or_deletion() {
        let ledgers = ledgers();
        let chosen = [record("h1", HostState::Chosen)];
        ledgers.writing(&cluster("a", "1"), &[], &chosen);
        ledgers.wrote(&cluster("a", "1"), &[], &chosen, "5");
        ledgers.observe(&watcher::Event::Apply(with_claims("a", "5", &["h1"])));
        assert!(ledgers.caught_up_but(&me()));
        ledgers.writing(&cluster("a", "5"), &chosen, &[]);
        assert!(!ledgers.caught_up_but(&me()));
        ledgers.observe(&watcher::Event::Delete(cluster("a", "5")));
        assert!(ledgers.caught_up_but(&me()));
    }
}

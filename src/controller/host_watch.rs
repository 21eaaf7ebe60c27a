//! The BareMetalHost watch: the host cache the scheduler reads, and the clusters a host event
//! concerns woken (only when it changed what the operator reads: `relevance.rs`).

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::relevance::Relevance;
use super::watches::{Wakers, report};
use crate::api::{BareMetalHost, Phase, SIPCluster};
use crate::scheduling::HostView;

/// Hosts per page of the host cache's list.
const HOST_PAGE: u32 = 100;

/// The host cache, and the task that keeps it and wakes the clusters its events concern.
pub(super) fn watch(
    hosts_api: Api<BareMetalHost>,
    wakers: &Wakers,
) -> (
    Store<BareMetalHost>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (hosts, writer) = reflector::store();
    let events = {
        let wakers = wakers.clone();
        let (clusters, metrics) = (wakers.clusters.clone(), wakers.metrics.clone());
        let mut relevance = Relevance::default();
        // Whom a (re)list concerns, woken once the cache holds the whole list.
        let mut after_list: std::collections::HashSet<ObjectRef<SIPCluster>> = Default::default();
        // Listed in pages of 100, not kube's 500: a page's body and its objects before
        // `slim` are what the peak memory holds beyond the cache (at 10,000 hosts about
        // 0.7 MiB less; the pages cost only the first sync a few more requests).
        reflector(
            writer,
            watcher(hosts_api, watcher::Config::default().page_size(HOST_PAGE))
                .modify(slim)
                .default_backoff(),
        )
        .for_each(move |event| {
            // The reflector has applied the event (a list's hosts: once it is complete).
            let wakes: Vec<ObjectRef<SIPCluster>> = match event {
                Err(e) => {
                    report(&metrics, "baremetalhosts", "baremetalhosts.metal3.io", &e);
                    Vec::new()
                }
                Ok(event) => {
                    metrics.watches.recovered("baremetalhosts");
                    match event {
                        watcher::Event::Apply(host) if relevance.changed(&host, false) => {
                            clusters_for_host(&clusters, &host)
                        }
                        watcher::Event::Delete(host) if relevance.changed(&host, true) => {
                            clusters_for_host(&clusters, &host)
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Vec::new(),
                        watcher::Event::Init => {
                            relevance.list_started();
                            Vec::new()
                        }
                        watcher::Event::InitApply(host) => {
                            if relevance.listed(&host) {
                                after_list.extend(clusters_for_host(&clusters, &host));
                            }
                            Vec::new()
                        }
                        watcher::Event::InitDone => {
                            for key in relevance.list_done() {
                                after_list.extend(clusters_with_member(&clusters, &key));
                            }
                            after_list.drain().collect()
                        }
                    }
                }
            };
            if !wakes.is_empty() {
                wakers.wake(wakes);
            }
            std::future::ready(())
        })
    };
    (hosts, events)
}

/// Keeps only what the operator reads of a host: managedFields and kubectl's last-applied
/// annotation can outweigh the rest of the object, times every host watched.
fn slim(host: &mut BareMetalHost) {
    host.metadata.managed_fields = None;
    if let Some(annotations) = host.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The clusters whose ledger holds `key` (a host gone without an event of its own).
fn clusters_with_member(
    clusters: &Store<SIPCluster>,
    key: &crate::scheduling::HostKey,
) -> Vec<ObjectRef<SIPCluster>> {
    clusters
        .state()
        .iter()
        .filter(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.hosts
                    .iter()
                    .any(|r| r.name == key.name() && r.namespace == key.namespace())
            })
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn clusters_for_host(
    clusters: &Store<SIPCluster>,
    host: &BareMetalHost,
) -> Vec<ObjectRef<SIPCluster>> {
    let view = HostView::from_host(host);
    clusters
        .state()
        .iter()
        .filter(|c| {
            let status = c.status.as_ref();
            let in_ledger = status.is_some_and(|s| {
                s.hosts
                    .iter()
                    .any(|r| r.name == view.key.name() && r.namespace == view.key.namespace())
            });
            let labeled = view.labeled_for().is_some_and(|k| {
                Some(&k.name) == c.metadata.name.as_ref()
                    && Some(&k.namespace) == c.metadata.namespace.as_ref()
            });
            let gathering = status.and_then(|s| s.phase).unwrap_or_default() == Phase::Gathering;
            in_ledger || labeled || gathering
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

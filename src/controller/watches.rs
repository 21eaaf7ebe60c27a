//! What the operator watches, and whom each event wakes: the SIPClusters (the controller's own
//! stream and cache; every namespace's, for their ledgers, when it serves one: `ledgers.rs`),
//! the BareMetalHosts (a cache; an event wakes the clusters it concerns), the load balancers'
//! template ConfigMaps (`templates.rs`), the metadata of the services' objects (drift wakes the
//! cluster that owns them), the status of their Deployments (`availability.rs`) and the
//! metadata of the predecessor's Deployments (a cache, woken by nothing).

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::Resource;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::drift::{self, Drift};
use super::ledgers::{Ledgers, Waiting};
use super::templates::Templates;
use super::touched::Touched;
use super::{Settings, relist};
use crate::api::{BareMetalHost, SIPCluster};
use crate::metrics::Metrics;
use crate::services;

/// SIPCluster events the controller may lag behind before the cache's watch waits for it.
const CLUSTER_EVENTS: usize = 1024;

/// The running watches and what they feed.
pub struct Watches {
    pub clusters: Store<SIPCluster>,
    /// Every SIPCluster's ledger, and whether the operator's own writes have come back.
    pub ledgers: Arc<Ledgers>,
    /// The predecessor's Deployments, metadata only.
    pub predecessors: Store<PartialObjectMeta<Deployment>>,
    /// The services' Deployments, status only (`availability.rs`).
    pub deployments: Store<Deployment>,
    /// The SIPCluster events the controller is driven by.
    pub cluster_events: ReflectHandle<SIPCluster>,
    pub hosts: Store<BareMetalHost>,
    /// Events of what the phases read from caches (the BareMetalHosts, the template
    /// ConfigMaps), counted for each cluster they concern.
    pub touched: Arc<Touched>,
    pub templates: Templates,
    pub drift: Arc<Drift>,
    /// Clusters woken by host and template events and by drift.
    pub woken: UnboundedReceiver<ObjectRef<SIPCluster>>,
    /// The watch tasks, stopped when dropped.
    pub tasks: Tasks,
}

/// What a watch whose events concern clusters needs: whom they may concern (the SIPCluster
/// cache), and how to tell them (each cluster's count of such events, the wake channel).
#[derive(Clone)]
pub(super) struct Wakers {
    pub clusters: Store<SIPCluster>,
    pub touched: Arc<Touched>,
    pub wake: UnboundedSender<ObjectRef<SIPCluster>>,
    pub metrics: Arc<Metrics>,
}

impl Wakers {
    /// Counts the event for each of `clusters` (a held one is let through, a Ready one's check
    /// reads again) and wakes it.
    pub fn wake(&self, clusters: impl IntoIterator<Item = ObjectRef<SIPCluster>>) {
        for cluster in clusters {
            self.touched.bump(&cluster);
            let _ = self.wake.unbounded_send(cluster);
        }
    }
}

/// Starts every watch.
pub fn start(client: &kube::Client, settings: &Settings) -> Watches {
    let metrics = &settings.metrics;
    let hosts_api: Api<BareMetalHost> = super::scoped(client, settings.host_namespace.as_deref());
    let ns = settings.cluster_namespace.as_deref();
    let clusters: Api<SIPCluster> = super::scoped(client, ns);
    // The SIPCluster cache is driven by a task of its own, not by the controller, so the
    // operator can wait for both caches before it starts working: kube's store readiness wakes
    // only one waiter, and the controller is one.
    let (cluster_store, cluster_writer) = reflector::store_shared(CLUSTER_EVENTS);
    // Host events, template events, drift and other ledgers' releases wake clusters through
    // this channel: one watch per kind, whose events first update the cache the reconciler
    // reads, then wake whom they concern.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let wakers = Wakers {
        clusters: cluster_store.clone(),
        touched: Arc::new(Touched::default()),
        wake,
        metrics: metrics.clone(),
    };
    let (hosts, host_events) = super::host_watch::watch(hosts_api, &wakers);
    let (ledgers, ledger_watch) = ledgers(client, settings, &cluster_store, &wakers, &hosts);
    let cluster_events = cluster_writer
        .subscribe()
        .expect("a shared store hands out subscriptions");
    let serves_every_ledger = ledger_watch.is_none().then(|| ledgers.clone());
    let cluster_cache = watcher(clusters, watcher::Config::default())
        .default_backoff()
        .reflect_shared(cluster_writer)
        .for_each({
            let metrics = metrics.clone();
            move |event| {
                cluster_event(&metrics, serves_every_ledger.as_deref(), &event);
                std::future::ready(())
            }
        });
    let drift = Arc::new(Drift::default());
    let (templates, template_events) = super::templates::watch(client, ns, &wakers);
    // The watches end with the controller (a replica that loses the lease stops them all).
    let mut tasks = Tasks(vec![tokio::spawn(cluster_cache), tokio::spawn(host_events)]);
    tasks.0.extend(children(client, ns, &drift, &wakers));
    tasks
        .0
        .extend(template_events.into_iter().map(tokio::spawn));
    tasks.0.extend(ledger_watch);
    let (predecessors, predecessor_watch) = watch_predecessors(client, ns, metrics);
    tasks.0.push(tokio::spawn(predecessor_watch));
    let (deployments, availability_watch) =
        super::availability::watch(client, ns, &cluster_store, &wakers.wake, metrics);
    tasks.0.push(tokio::spawn(availability_watch));
    Watches {
        clusters: cluster_store,
        ledgers,
        predecessors,
        deployments,
        cluster_events,
        hosts,
        touched: wakers.touched,
        templates,
        drift,
        woken,
        tasks,
    }
}

/// Gathering needs every SIPCluster's ledger: the controller's cache holds them unless it
/// serves one namespace, and then a watch of its own does.
fn ledgers(
    client: &kube::Client,
    settings: &Settings,
    cluster_store: &Store<SIPCluster>,
    wakers: &Wakers,
    hosts: &Store<BareMetalHost>,
) -> (Arc<Ledgers>, Option<tokio::task::JoinHandle<()>>) {
    if settings.cluster_namespace.is_none() {
        return (Arc::new(Ledgers::new(cluster_store.clone())), None);
    }
    let (store, writer) = reflector::store();
    let ledgers = Arc::new(Ledgers::confirming(store));
    let watch = Ledgers::watch(
        &ledgers,
        Api::all(client.clone()),
        writer,
        Waiting {
            wakers: wakers.clone(),
            hosts: hosts.clone(),
        },
        settings.ledger_lag,
    );
    (ledgers, Some(tokio::spawn(watch)))
}

/// The watches of the services' objects' metadata, one per kind.
fn children(
    client: &kube::Client,
    ns: Option<&str>,
    drift: &Arc<Drift>,
    wakers: &Wakers,
) -> [tokio::task::JoinHandle<()>; 4] {
    let (wake, metrics) = (&wakers.wake, &wakers.metrics);
    [
        tokio::spawn(watch_children::<Deployment>(
            client, ns, drift, wake, metrics,
        )),
        tokio::spawn(watch_children::<Service>(client, ns, drift, wake, metrics)),
        tokio::spawn(watch_children::<ConfigMap>(
            client, ns, drift, wake, metrics,
        )),
        tokio::spawn(watch_children::<ServiceAccount>(
            client, ns, drift, wake, metrics,
        )),
    ]
}

/// A SIPCluster watch's event: its health, and the event shown to the ledgers if it feeds them.
pub(super) fn cluster_event(
    metrics: &Metrics,
    ledgers: Option<&Ledgers>,
    event: &Result<watcher::Event<SIPCluster>, watcher::Error>,
) {
    match event {
        Ok(event) => {
            metrics.watches.recovered("sipclusters");
            if let Some(ledgers) = ledgers {
                ledgers.observe(event);
            }
        }
        Err(e) => report(
            metrics,
            "sipclusters",
            "sipclusters.airship.airshipit.org",
            e,
        ),
    }
}

/// The metadata of the predecessor's Deployments (`services::predecessor`), which each
/// deployment of services checks for before sip's take their names and node ports. The
/// predecessor is stopped before sip runs, so what it left is in the first list.
fn watch_predecessors(
    client: &kube::Client,
    namespace: Option<&str>,
    metrics: &Arc<Metrics>,
) -> (
    Store<PartialObjectMeta<Deployment>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<PartialObjectMeta<Deployment>> = super::scoped(client, namespace);
    let config = watcher::Config::default().labels(&services::predecessor::deployment_selector());
    let (store, writer) = reflector::store();
    let metrics = metrics.clone();
    let watch = reflector(writer, watcher(api, config).default_backoff()).for_each(move |event| {
        match event {
            Ok(_) => metrics.watches.recovered("deployments"),
            Err(e) => report(&metrics, "deployments", "deployments", &e),
        }
        std::future::ready(())
    });
    (store, watch)
}

/// Background tasks aborted when dropped.
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Watches the metadata of one kind of the services' objects (those the operator manages, by
/// label) and wakes the SIPCluster whose objects drifted. Secrets are not watched: the
/// operator has no right to list them; the Ready check reads its own Secrets instead.
fn watch_children<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    drift: &Arc<Drift>,
    wake: &UnboundedSender<ObjectRef<SIPCluster>>,
    metrics: &Arc<Metrics>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    // Metadata only: what drift is judged by, and a fraction of the objects' size.
    let api: Api<PartialObjectMeta<K>> = super::scoped(client, namespace);
    let kind = drift::kind_of::<K>();
    let config = watcher::Config::default().labels(&format!(
        "{}={}",
        services::meta::LABEL_MANAGED_BY,
        services::meta::MANAGED_BY
    ));
    let (drift, wake, metrics) = (drift.clone(), wake.clone(), metrics.clone());
    let resource: &'static str = match kind {
        "Deployment" => "deployments",
        "Service" => "services",
        "ConfigMap" => "configmaps",
        _ => "serviceaccounts",
    };
    let mut seen = relist::Seen::default();
    watcher(api, config)
        .default_backoff()
        .for_each(move |event| {
            let changes = match &event {
                Ok(event) => {
                    metrics.watches.recovered(resource);
                    if matches!(event, watcher::Event::InitDone) {
                        drift.listed(kind);
                    }
                    seen.event(event)
                }
                Err(e) => {
                    report(&metrics, resource, resource, e);
                    Vec::new()
                }
            };
            for (meta, gone) in changes {
                if let Some(cluster) = drift.observe(kind, &meta, gone) {
                    tracing::info!(kind, cluster = %cluster, "a service object drifted");
                    let _ = wake.unbounded_send(cluster);
                }
            }
            std::future::ready(())
        })
}

/// A failed list or watch (retried with backoff): logged at warn and counted, with what it
/// means for whoever runs the operator; `/readyz` shows it until the watch recovers.
pub(super) fn report(
    metrics: &Metrics,
    resource: &'static str,
    full_name: &str,
    error: &watcher::Error,
) {
    let why = describe(full_name, error);
    tracing::warn!(resource, error = %why, "a watch of the operator's caches failed; retrying");
    metrics.watches.failed(resource, why);
}

/// Names a missing CRD or a missing right; any other error as it is.
fn describe(resource: &str, error: &watcher::Error) -> String {
    let code = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    };
    match code {
        Some(404) => format!("{resource} not found: is its CRD installed? ({error})"),
        Some(403) => format!(
            "forbidden: the operator's ServiceAccount needs list and watch on {resource} ({error})"
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> watcher::Error {
        let status = kube::core::Status::failure("refused", "Refused").with_code(code);
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn a_missing_crd_or_right_is_named() {
        let crd = describe("baremetalhosts.metal3.io", &api_error(404));
        assert!(
            crd.starts_with("baremetalhosts.metal3.io not found: is its CRD installed?"),
            "{crd}"
        );
        let right = describe("baremetalhosts.metal3.io", &api_error(403));
        assert!(
            right.contains("needs list and watch on baremetalhosts.metal3.io"),
            "{right}"
        );
        let other = describe("x", &api_error(500));
        assert!(other.contains("refused"), "{other}");
    }
}

//! Whether a cluster's services' pods are actually available: the `ServicesAvailable`
//! condition, from the status of the services' Deployments as the Deployment controller
//! reports it, set with every step into or within Ready (`commit.rs`). It says what the kubelets did with what sip applied; it does not change what
//! Ready means (sip's own work done).
//!
//! The Deployments come from a reflector of their status only (kube's store: spec and managed
//! fields dropped). A Deployment event wakes its cluster only when that cluster is Ready and
//! its condition, as written in its status, differs from what the store now says: no memory of
//! our own, and a cluster is written once per change of availability, not per event.

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::conditions::{SERVICES_AVAILABLE, reason};
use crate::api::{LABEL_CLUSTER_NAME, Phase, SIPCluster, SIPClusterStatus};
use crate::metrics::Metrics;
use crate::services::meta::{LABEL_MANAGED_BY, MANAGED_BY};

/// The condition a cluster's services call for: (available, reason, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    pub available: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Whether a Deployment's status says it is available (its `Available` condition).
fn available(deployment: Option<&Deployment>) -> bool {
    deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
}

/// The condition for services whose Deployments are `deployments` (name, as the store has it).
/// The message names the unavailable ones only, so it stays the same until one of them changes
/// (a Deployment not yet seen reads as not available yet, like one with no status). Pure.
pub fn judge(deployments: &[(&str, Option<&Deployment>)]) -> Availability {
    if deployments.is_empty() {
        return Availability {
            available: true,
            reason: reason::NO_SERVICES,
            message: "the cluster asks for no service".into(),
        };
    }
    let mut waiting: Vec<&str> = deployments
        .iter()
        .filter(|(_, d)| !available(*d))
        .map(|(name, _)| *name)
        .collect();
    waiting.sort_unstable();
    if waiting.is_empty() {
        Availability {
            available: true,
            reason: reason::AVAILABLE,
            message: format!(
                "every service's Deployment is available ({})",
                deployments.len()
            ),
        }
    } else {
        Availability {
            available: false,
            reason: reason::UNAVAILABLE,
            message: format!("waiting for available pods: {}", waiting.join(", ")),
        }
    }
}

/// The condition for `status`'s services in `namespace`, from `store`.
pub fn of(store: &Store<Deployment>, namespace: &str, status: &SIPClusterStatus) -> Availability {
    let found: Vec<(String, Option<Arc<Deployment>>)> = status
        .services
        .iter()
        .map(|s| {
            let key = ObjectRef::new(&s.name).within(namespace);
            (s.name.clone(), store.get(&key))
        })
        .collect();
    let pairs: Vec<(&str, Option<&Deployment>)> = found
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_deref()))
        .collect();
    judge(&pairs)
}

/// Whether a Ready cluster's written condition differs from what the store says now.
fn stale(cluster: &SIPCluster, store: &Store<Deployment>) -> bool {
    let Some(status) = cluster.status.as_ref() else {
        return false;
    };
    if status.phase != Some(Phase::Ready) {
        return false;
    }
    let now = of(
        store,
        &cluster.metadata.namespace.clone().unwrap_or_default(),
        status,
    );
    let written = status
        .conditions
        .iter()
        .find(|c| c.type_ == SERVICES_AVAILABLE);
    written.is_none_or(|c| {
        (c.status == "True") != now.available || c.reason != now.reason || c.message != now.message
    })
}

/// Keeps only what availability is judged by.
fn slim(deployment: &mut Deployment) {
    deployment.metadata.managed_fields = None;
    deployment.metadata.annotations = None;
    deployment.spec = None;
}

/// The status of the services' Deployments, and the watch that keeps it and wakes the Ready
/// clusters whose condition it changes.
pub fn watch(
    client: &kube::Client,
    namespace: Option<&str>,
    clusters: &Store<SIPCluster>,
    wake: &UnboundedSender<ObjectRef<SIPCluster>>,
    metrics: &Arc<Metrics>,
) -> (
    Store<Deployment>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<Deployment> = super::scoped(client, namespace);
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let (store, writer) = reflector::store();
    let (reader, clusters, wake, metrics) = (
        store.clone(),
        clusters.clone(),
        wake.clone(),
        metrics.clone(),
    );
    let stream = watcher(api, config).default_backoff().modify(slim);
    let watch = reflector(writer, stream).for_each(move |event| {
        match event {
            Ok(event) => {
                metrics.watches.recovered("deployments");
                if let watcher::Event::Apply(d) | watcher::Event::Delete(d) = &event {
                    let owner = d
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_CLUSTER_NAME));
                    if let (Some(owner), Some(ns)) = (owner, d.metadata.namespace.as_deref()) {
                        let key = ObjectRef::<SIPCluster>::new(owner).within(ns);
                        if clusters.get(&key).is_some_and(|c| stale(&c, &reader)) {
                            let _ = wake.unbounded_send(key);
                        }
                    }
                }
            }
            Err(e) => super::watches::report(&metrics, "deployments", "deployments", &e),
        }
        std::future::ready(())
    });
    (store, watch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    fn deployment(available: Option<&str>) -> Deployment {
        Deployment {
            status: available.map(|s| DeploymentStatus {
                conditions: Some(vec![DeploymentCondition {
                    type_: "Available".into(),
                    status: s.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn available_only_when_every_deployment_says_so() {
        let (up, down, unknown) = (
            deployment(Some("True")),
            deployment(Some("False")),
            deployment(None),
        );
        type Case<'a> = (
            Vec<(&'a str, Option<&'a Deployment>)>,
            bool,
            &'a str,
            &'a str,
        );
        let cases: [Case<'_>; 5] = [
            (vec![], true, reason::NO_SERVICES, "no service"),
            (
                vec![("a", Some(&up)), ("b", Some(&up))],
                true,
                reason::AVAILABLE,
                "available (2)",
            ),
            (
                vec![("b", Some(&down)), ("a", Some(&up))],
                false,
                reason::UNAVAILABLE,
                "pods: b",
            ),
            (
                vec![("b", None), ("a", Some(&unknown))],
                false,
                reason::UNAVAILABLE,
                "pods: a, b",
            ),
            (
                vec![("c", Some(&up)), ("a", None)],
                false,
                reason::UNAVAILABLE,
                "pods: a",
            ),
        ];
        for (deployments, want, why, says) in cases {
            let got = judge(&deployments);
            assert_eq!((got.available, got.reason), (want, why), "{says}");
            assert!(got.message.ends_with(says), "{says}: {}", got.message);
        }
    }

    #[test]
    fn not_seen_yet_and_no_status_read_the_same() {
        let unknown = deployment(None);
        assert_eq!(judge(&[("a", None)]), judge(&[("a", Some(&unknown))]));
    }
}

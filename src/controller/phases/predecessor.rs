//! The Go predecessor's service objects, replaced by sip's: found by their names and marks
//! (`services::predecessor`), removed in the order that frees their node ports for sip's
//! Services, what was removed told in an Event per instance. Objects of those names that the
//! predecessor did not make are left alone and reported.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service};
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::services::predecessor::{self, Legacy};

use super::Turn;
use crate::controller::announce;

/// One predecessor instance as found: its objects `(kind, uid)`, the Service apart.
#[derive(Debug)]
pub(super) struct Found {
    pub legacy: Legacy,
    service: Option<String>,
    others: Vec<(&'static str, String)>,
}

/// What the predecessor left in the namespace.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    pub found: Vec<Found>,
    /// Objects with the predecessor's names that it did not make: `"Kind name"`.
    pub foreign: Vec<String>,
}

impl Turn<'_> {
    /// Looks for the predecessor's objects: its Deployment and Service of each instance, and,
    /// where one of them is its, the Secret and ConfigMap it mounted. Their watch tells
    /// whether any of its Deployments is here (sip's carry `managed-by`, the predecessor's do not);
    /// only then, or when `thorough` (a service failed: a Service it made before crashing
    /// short of its Deployment may hold the port), are its instances read by name.
    pub(super) async fn predecessors_leftovers(&self, thorough: bool) -> kube::Result<Leftovers> {
        let mut leftovers = Leftovers::default();
        let instances = predecessor::instances(&self.key.name);
        let present: Vec<String> = if thorough {
            instances.iter().map(|l| l.name.clone()).collect()
        } else {
            // From the watch of the predecessor's Deployments: a LIST, even from the API
            // server's watch cache, took 1-5 ms of each deployment in a burst of 50 clusters.
            self.ctx
                .predecessors
                .state()
                .iter()
                .filter(|d| d.metadata.namespace.as_deref() == Some(&self.key.namespace))
                .map(|d| d.name_any())
                .collect()
        };
        for legacy in instances {
            if present.contains(&legacy.name) {
                self.inspect(legacy, &mut leftovers).await?;
            }
        }
        if !leftovers.foreign.is_empty() {
            self.ctx
                .publish(
                    self.cluster,
                    EventType::Warning,
                    "PredecessorObjectKept",
                    format!(
                        "left alone, not made by airshipit/sip (owner references or labels differ): {}; delete them if they are its",
                        leftovers.foreign.join(", ")
                    ),
                )
                .await;
        }
        Ok(leftovers)
    }

    /// Reads the objects under one of the predecessor's instance names: those it made go to
    /// `found`, same-named others to `foreign`.
    async fn inspect(&self, legacy: Legacy, leftovers: &mut Leftovers) -> kube::Result<()> {
        let name = legacy.name.clone();
        let (deployments, services) = (
            self.namespaced::<Deployment>(),
            self.namespaced::<Service>(),
        );
        let (deployment, service) =
            futures::try_join!(deployments.get_opt(&name), services.get_opt(&name))?;
        let mut found = Found {
            legacy,
            service: None,
            others: Vec::new(),
        };
        let deployment = match deployment {
            Some(d) if predecessor::deployment_is_its(&d, &name) => {
                found
                    .others
                    .push(("Deployment", d.uid().unwrap_or_default()));
                Some(d)
            }
            Some(_) => {
                leftovers.foreign.push(format!("Deployment {name}"));
                None
            }
            None => None,
        };
        match service {
            Some(s) if predecessor::service_is_its(&s, &name) => {
                found.service = s.uid();
            }
            Some(_) => leftovers.foreign.push(format!("Service {name}")),
            None => {}
        }
        if deployment.is_none() && found.service.is_none() {
            return Ok(());
        }
        for kind in found.legacy.kinds.iter().filter(|k| **k != "Deployment") {
            let meta = match *kind {
                "Secret" => self
                    .namespaced::<Secret>()
                    .get_metadata_opt(&name)
                    .await?
                    .map(|m| m.metadata),
                _ => self
                    .namespaced::<ConfigMap>()
                    .get_metadata_opt(&name)
                    .await?
                    .map(|m| m.metadata),
            };
            match meta {
                Some(m) if predecessor::config_is_its(&m, &name, deployment.as_ref()) => {
                    found.others.push((kind, m.uid.unwrap_or_default()));
                }
                Some(_) => leftovers.foreign.push(format!("{kind} {name}")),
                None => {}
            }
        }
        leftovers.found.push(found);
        Ok(())
    }

    /// Deletes the predecessor's Service of `found` (it holds the node port sip's Service
    /// asks for); with `all`, its other objects too. Returns what it deleted, `"Kind name"`.
    pub(super) async fn remove_predecessors(
        &self,
        found: &mut Found,
        all: bool,
    ) -> kube::Result<Vec<String>> {
        let name = found.legacy.name.clone();
        let mut removed = Vec::new();
        if let Some(uid) = found.service.take()
            && self.delete_uid::<Service>(&name, uid).await?
        {
            removed.push(format!("Service {name}"));
        }
        if all {
            for (kind, uid) in std::mem::take(&mut found.others) {
                let deleted = match kind {
                    "Deployment" => self.delete_uid::<Deployment>(&name, uid).await?,
                    "Secret" => self.delete_uid::<Secret>(&name, uid).await?,
                    _ => self.delete_uid::<ConfigMap>(&name, uid).await?,
                };
                if deleted {
                    removed.push(format!("{kind} {name}"));
                }
            }
        }
        Ok(removed)
    }

    /// Tells what of the predecessor's was removed, one Event per instance, related to its
    /// object (kube's recorder folds Events of one reason about one object into a series that
    /// keeps the first note; the related object keeps instances removed in later turns apart).
    pub(super) async fn tell_removed(&self, removed: &[String]) {
        let mut by_instance: Vec<(&str, Vec<&str>)> = Vec::new();
        for entry in removed {
            let (kind, name) = entry.split_once(' ').unwrap_or(("", entry));
            match by_instance.iter_mut().find(|(n, _)| *n == name) {
                Some((_, kinds)) => kinds.push(kind),
                None => by_instance.push((name, vec![kind])),
            }
        }
        for (name, kinds) in by_instance {
            let objects: Vec<String> = kinds.iter().map(|k| format!("{k} {name}")).collect();
            let mut event = announce::event(
                EventType::Normal,
                "PredecessorReplaced",
                format!("removed airshipit/sip's objects: {}", objects.join(", ")),
            );
            event.secondary = Some(ObjectReference {
                api_version: Some(
                    if kinds[0] == "Deployment" {
                        "apps/v1"
                    } else {
                        "v1"
                    }
                    .into(),
                ),
                kind: Some(kinds[0].into()),
                name: Some(name.into()),
                namespace: Some(self.key.namespace.clone()),
                ..ObjectReference::default()
            });
            announce::publish(&self.ctx.recorder, &event, &self.cluster.object_ref(&())).await;
        }
    }

    /// Deletes `name` if it is still the object `uid`; false when it was already gone.
    async fn delete_uid<K>(&self, name: &str, uid: String) -> kube::Result<bool>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let deleted = self.namespaced::<K>().delete(name, &params).await;
        self.forget_name(crate::controller::drift::kind_of::<K>(), name);
        match deleted {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

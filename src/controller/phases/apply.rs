//! Applying and deleting the services' objects: server-side apply under the operator's field
//! manager (a second apply changes nothing), each write told to the drift memory; deletion
//! finds stale instances by the labels the operator sets and deletes only what this SIPCluster
//! owns.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::controller::drift::{self, ChildRef};
use crate::controller::sources::SourceRef;
use crate::failpoint::{self, Site};
use crate::services::{self, Child, ServiceError, meta};

use super::Turn;
use super::io::overlapped;

/// `(kind, name)` of a child.
pub type ChildKey = (&'static str, String);

impl Turn<'_> {
    /// Applies a service's objects in two waves: first what its pods use (ServiceAccount,
    /// ConfigMaps, Secrets), so a pod of a changed Deployment never mounts the configuration
    /// it replaces; then the Deployment and its Service, which need nothing of each other.
    /// Objects of a wave are applied together. An instance whose names hold nothing yet is
    /// created in one wave: its pods cannot start before what they mount exists (the kubelet
    /// waits for it), and there is no old configuration to mount. The API server refusing one
    /// (a node port taken, a cluster IP outside the range) fails the service, naming the first
    /// refused in render order; other errors end the turn.
    ///
    /// A `fresh` instance (not deployed by an earlier turn) first looks under each of its
    /// names (read ahead, [`Turn::read_names_ahead`]): an object there that is not this
    /// SIPCluster's fails the service, untouched.
    pub(super) async fn apply_all(
        &self,
        id: services::ServiceId,
        objects: &[Child],
        fresh: bool,
    ) -> kube::Result<Result<(), ServiceError>> {
        let empty = if fresh {
            match self.under_names(id, objects).await? {
                Ok(empty) => empty,
                Err(refusal) => return Ok(Err(refusal)),
            }
        } else {
            false
        };
        for wave in waves(objects, empty) {
            let applied =
                futures::future::join_all(wave.iter().map(|child| self.apply_child(child))).await;
            for (child, applied) in wave.iter().zip(applied) {
                match applied {
                    Ok(()) => {}
                    Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 409 | 422) => {
                        return Ok(Err(ServiceError::Refused {
                            service: id,
                            object: child.describe(),
                            detail: s.message,
                        }));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Ok(()))
    }

    /// What holds the names of `objects`: nothing (`true`), only this SIPCluster's objects
    /// (`false`), or, the first of them that is not its, the refusal.
    async fn under_names(
        &self,
        id: services::ServiceId,
        objects: &[Child],
    ) -> kube::Result<Result<bool, ServiceError>> {
        let found = futures::future::try_join_all(objects.iter().map(|c| self.existing(c))).await?;
        let uid = self.cluster.uid().unwrap_or_default();
        let foreign = objects.iter().zip(&found).find_map(|(child, found)| {
            let found = found.as_ref()?;
            (!meta::is_ours(found, &self.key.name, &uid)).then(|| ServiceError::Foreign {
                service: id,
                object: child.describe(),
                who: meta::made_by(found),
            })
        });
        Ok(match foreign {
            Some(refusal) => Err(refusal),
            None => Ok(found.iter().all(Option::is_none)),
        })
    }

    async fn existing(&self, child: &Child) -> kube::Result<Option<ObjectMeta>> {
        self.object_metadata(&child.resource(), child.name()).await
    }

    /// What holds the names of the instances not yet deployed, read for the check above
    /// before their first apply is due (in Extracting's read round, or beside the finalizer),
    /// so that check costs the services no round trip of their own. A failed read is left for
    /// the check to make again.
    pub(super) async fn read_names_ahead(&self) {
        // The jump hosts' host keys are read whole in the same round (`host_keys`).
        let host_keys = self.host_key_names();
        let names: Vec<_> = services::instances(&self.cluster.spec)
            .into_iter()
            .map(|id| (id, meta::object_name(&self.key.name, id)))
            .filter(|(_, name)| !self.deployed(name))
            .flat_map(|(id, name)| services::object_names(id.kind, &name))
            .filter(|(resource, name)| resource.kind != "Secret" || !host_keys.contains(name))
            .collect();
        let _ = overlapped(names, |(resource, name)| async move {
            Ok(self.object_metadata(&resource, &name).await.ok())
        })
        .await;
    }

    /// Whether an earlier turn deployed the instance `name`: its names hold its own objects.
    pub(super) fn deployed(&self, name: &str) -> bool {
        self.status
            .services
            .iter()
            .any(|s| s.name == name && s.ready)
    }

    async fn apply_child(&self, child: &Child) -> kube::Result<()> {
        match child {
            Child::ServiceAccount(o) => self.apply(o).await,
            Child::ConfigMap(o) => self.apply(o).await,
            Child::Secret(o) => self.apply(o).await,
            Child::Service(o) => self.apply(o).await,
            Child::Deployment(o) => self.apply(o).await,
        }
    }

    async fn apply<K>(&self, object: &K) -> kube::Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let params = PatchParams::apply(crate::controller::MANAGER)
            .force()
            .validation_strict();
        let kind = drift::kind_of::<K>();
        let child = ChildRef::new(kind, &self.key.namespace, &object.name_any());
        let mark = self.ctx.drift.writing(&child);
        failpoint::before_write(self.ctx.pause.as_deref(), Site::Apply).await;
        let applied = self
            .namespaced::<K>()
            .patch(&object.name_any(), &params, &Patch::Apply(object))
            .await;
        if applied.is_ok() {
            failpoint::after_write(self.ctx.cancel.as_deref(), Site::Apply).await;
        }
        let version = applied
            .as_ref()
            .ok()
            .and_then(|o| drift::version(kind, o.meta()));
        if kind == "Secret" && version.is_some() {
            // The Ready check later in this turn need not read back what it just wrote.
            let source = SourceRef::secret(&self.key.namespace, &object.name_any());
            self.saw(source, version.clone());
        }
        mark.written(version);
        if applied.is_ok() {
            self.forget_name(kind, &object.name_any());
        }
        applied.map(drop)
    }

    /// Deletes the objects of this cluster's service instances that are not in `keep`;
    /// returns how many. Every instance has exactly one Deployment, named like all its
    /// objects, so the Deployments (listed by the labels the operator sets, deleted only when
    /// this SIPCluster owns them) find the stale instances, and their other objects are
    /// deleted by name. Secrets are never listed: the operator needs no list right on them.
    /// (An object written before its Deployment by a turn that then crashed, or a service
    /// removed before its first deployment was recorded in the status, is left to the
    /// owner-reference garbage collection when the SIPCluster goes.)
    pub(super) async fn prune(&self, keep: &BTreeSet<ChildKey>) -> kube::Result<usize> {
        let uid = self.cluster.uid().unwrap_or_default();
        let selector = meta::children_selector(&self.key.name);
        let deployments = self
            .namespaced::<Deployment>()
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        let mut deleted = 0;
        for object in deployments.items {
            let name = object.name_any();
            let owned = object.owner_references().iter().any(|o| o.uid == uid);
            if !owned || keep.contains(&("Deployment", name.clone())) {
                continue;
            }
            // The Deployment goes last: it is how a stale instance is found again if this turn
            // stops midway.
            deleted += self.delete::<Service>(&name).await?;
            deleted += self.delete::<Secret>(&name).await?;
            // A jump host's kept host key (another name: it outlives the pods, not the
            // instance).
            deleted += self
                .delete::<Secret>(&services::host_key_secret_name(&name))
                .await?;
            deleted += self.delete::<ConfigMap>(&name).await?;
            deleted += self.delete::<ServiceAccount>(&name).await?;
            deleted += self.delete::<Deployment>(&name).await?;
        }
        Ok(deleted)
    }

    /// Deletes one object if this SIPCluster owns it; 1 if it did.
    async fn delete<K>(&self, name: &str) -> kube::Result<usize>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api = self.namespaced::<K>();
        // Only what this SIPCluster owns: an object of the same name someone else made stays.
        let Some(found) = api.get_metadata_opt(name).await? else {
            return Ok(0);
        };
        let owner = self.cluster.uid().unwrap_or_default();
        if !found.owner_references().iter().any(|o| o.uid == owner) {
            tracing::warn!(
                kind = drift::kind_of::<K>(),
                name,
                "not deleting an object this SIPCluster does not own"
            );
            return Ok(0);
        }
        let child = ChildRef::new(drift::kind_of::<K>(), &self.key.namespace, name);
        self.ctx.drift.deleting(&child);
        self.forget_name(drift::kind_of::<K>(), name);
        // The object read, not one re-created under its name since.
        let params = DeleteParams {
            preconditions: found.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                failpoint::after_write(self.ctx.cancel.as_deref(), Site::Delete).await;
                Ok(1)
            }
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {
                self.ctx.drift.absent(&child);
                Ok(0)
            }
            Err(e) => {
                self.ctx.drift.absent(&child);
                Err(e)
            }
        }
    }
}

/// The waves `objects` are applied in: all at once when their names hold nothing yet, else
/// what the pods use first, then the Deployment and its Service. Pure.
fn waves(objects: &[Child], empty: bool) -> Vec<Vec<&Child>> {
    if empty {
        return vec![objects.iter().collect()];
    }
    let (first, second) = objects
        .iter()
        .partition(|c| !matches!(c, Child::Service(_) | Child::Deployment(_)));
    vec![first, second]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::HostState;
    use crate::controller::phases::test_cluster;
    use crate::controller::testing::{Objects, context};
    use crate::services::{ServiceId, ServiceKind};

    /// A jump host's Secret and Deployment, both named `tenant-a-jump-host`.
    fn children() -> Vec<Child> {
        let meta = ObjectMeta {
            name: Some("tenant-a-jump-host".into()),
            ..ObjectMeta::default()
        };
        vec![
            Child::Secret(Secret {
                metadata: meta.clone(),
                ..Secret::default()
            }),
            Child::Deployment(Deployment {
                metadata: meta,
                ..Deployment::default()
            }),
        ]
    }

    fn kinds(waves: Vec<Vec<&Child>>) -> Vec<Vec<&'static str>> {
        waves
            .into_iter()
            .map(|w| w.into_iter().map(Child::kind).collect())
            .collect()
    }

    #[test]
    fn a_first_creation_is_one_wave_a_change_two() {
        let objects = children();
        assert_eq!(kinds(waves(&objects, true)), [vec!["Secret", "Deployment"]]);
        assert_eq!(
            kinds(waves(&objects, false)),
            [vec!["Secret"], vec!["Deployment"]]
        );
    }

    /// What holds the names of [`children`] when the server has `held` as the Secret.
    async fn under_names(held: Option<Secret>) -> Result<bool, ServiceError> {
        let mut objects = Objects::default();
        if let Some(secret) = held {
            objects = objects.with_secret("sip", "tenant-a-jump-host", secret);
        }
        let ctx = context(Arc::new(objects), vec![]);
        let mut cluster = test_cluster(HostState::Chosen);
        cluster.metadata.uid = Some("uid-a".into());
        let turn = crate::controller::phases::Turn::new(&ctx, &cluster);
        let id = ServiceId {
            kind: ServiceKind::JumpHost,
            index: 0,
        };
        turn.under_names(id, &children())
            .await
            .expect("no request reaches a server")
    }

    #[tokio::test]
    async fn names_that_hold_nothing_hold_only_ours_or_hold_another_s() {
        assert!(matches!(under_names(None).await, Ok(true)));
        let mut ours = Secret::default();
        ours.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-a".into(),
            ..OwnerReference::default()
        }]);
        assert!(matches!(under_names(Some(ours)).await, Ok(false)));
        let refused = under_names(Some(Secret::default())).await;
        assert!(
            matches!(&refused, Err(ServiceError::Foreign { object, .. }) if object == "Secret/tenant-a-jump-host"),
            "{refused:?}"
        );
    }
}

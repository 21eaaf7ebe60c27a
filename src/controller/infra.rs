//! DeployingInfra's I/O, and the services half of Decommissioning: read what rendering needs,
//! apply each child with server-side apply under the operator's field manager (a second apply
//! changes nothing), and delete the children the spec no longer asks for. Children are found by
//! the labels the operator sets, and deleted only when this SIPCluster is their owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conditions::reason;
use super::drift::{self, ChildRef};
use super::phases::{Step, Turn, overlapped, read_secret};
use super::sources::{SourceRef, Sources};
use crate::api::{BareMetalHost, ServiceStatus};
use crate::extraction::{BmcCredentials, credentials_secret_ref, read_credentials};
use crate::machine::Event;
use crate::scheduling::HostKey;
use crate::services::{self, Child, Facts, ServiceError, meta};

/// `(kind, name)` of a child.
type ChildKey = (&'static str, String);
/// Each member's BMC credentials, or why they cannot be read.
type MemberCredentials = BTreeMap<HostKey, Result<BmcCredentials, String>>;
/// `(namespace, name)` of Secrets read, and their versions (`None`: absent).
pub(super) type SecretVersions = Vec<((String, String), Option<String>)>;

impl Turn<'_> {
    pub async fn deploy(&mut self) -> kube::Result<Step> {
        // Every object is applied again now: what drifted before is repaired by this.
        let _ = self.ctx.drift.take(&ObjectRef::from_obj(self.cluster));
        let spec = &self.cluster.spec;
        // What rendering reads is read at once.
        let (secrets, config_maps, (credentials, credential_versions)) = futures::try_join!(
            self.referenced_secrets(),
            self.template_config_maps(),
            self.member_credentials(),
        )?;
        // The versions of exactly what is rendered: a change after this read is a change.
        let namespace = &self.key.namespace;
        let mut read: HashMap<SourceRef, Option<String>> = credential_versions
            .into_iter()
            .map(|((ns, name), version)| (SourceRef::secret(&ns, &name), version))
            .collect();
        read.extend(
            secrets
                .iter()
                .map(|(name, s)| (SourceRef::secret(namespace, name), s.resource_version())),
        );
        read.extend(
            config_maps
                .iter()
                .map(|(name, c)| (SourceRef::config_map(namespace, name), c.resource_version())),
        );
        let mut sources = Sources::default();
        for source in self.source_refs() {
            let version = read.get(&source).cloned().flatten();
            sources.add(&source, version);
        }
        let Some(owner) = self.cluster.controller_owner_ref(&()) else {
            // Only an object never stored lacks a uid; the turn read it from the API server.
            return Ok(Step::blocked(
                reason::INFRA_SERVICE_FAILURE,
                "NoUid",
                "the SIPCluster has no uid to own its services by".into(),
            ));
        };
        let rendered = services::render(&Facts {
            cluster_name: &self.key.name,
            namespace: &self.key.namespace,
            spec,
            owner,
            hosts: &self.status.hosts,
            secrets: &secrets,
            config_maps: &config_maps,
            credentials: &credentials,
        });

        self.status.sources_version = Some(sources.sum());
        let mut statuses = Vec::with_capacity(rendered.len());
        let mut failures = Vec::new();
        let mut desired: BTreeSet<ChildKey> = BTreeSet::new();
        for r in &rendered {
            if let Ok(objects) = &r.objects {
                desired.extend(objects.iter().map(|c| (c.kind(), c.name().to_string())));
            }
        }
        // Services do not depend on each other: each applies its objects in order while the
        // others apply theirs.
        let outcomes = futures::future::join_all(rendered.iter().map(|r| self.apply_service(r)))
            .await
            .into_iter()
            .collect::<kube::Result<Vec<_>>>()?;
        for (r, outcome) in rendered.into_iter().zip(outcomes) {
            statuses.push(ServiceStatus {
                service: r.id.kind.field().into(),
                index: r.id.index as u32,
                name: r.name,
                ready: outcome.is_ok(),
                message: outcome.as_ref().err().map(ToString::to_string),
            });
            if let Err(e) = outcome {
                failures.push(e.to_string());
            }
        }
        let previous: Vec<String> = self
            .status
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect();
        self.status.services = statuses;
        if !failures.is_empty() {
            // Nothing is pruned while a service fails: its last good objects keep serving.
            return Ok(Step::blocked(
                reason::INFRA_SERVICE_FAILURE,
                "InfraServiceFailure",
                failures.join("; "),
            ));
        }
        // Only a service the last deployment had and this one lacks needs looking for (a LIST);
        // a turn that only updates services costs no read.
        let removed = previous
            .iter()
            .any(|name| !desired.contains(&("Deployment", name.clone())));
        let pruned = if removed {
            self.prune(&desired).await?
        } else {
            0
        };
        let applied = self.status.services.len();
        let message = match pruned {
            0 => format!("{applied} services applied"),
            n => format!("{applied} services applied, {n} objects of removed services deleted"),
        };
        Ok(Step::go(Event::Done, "InfraDeployed", message))
    }

    /// Decommissioning: deletes every child. True when none is left.
    pub async fn remove_services(&mut self) -> kube::Result<bool> {
        self.prune(&BTreeSet::new()).await?;
        self.status.services.clear();
        Ok(true)
    }

    fn namespaced<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.key.namespace)
    }

    /// The Secrets the spec names (authorized keys and the like) that exist, by name.
    async fn referenced_secrets(&self) -> kube::Result<BTreeMap<String, Secret>> {
        let names = services::referenced_secrets(&self.cluster.spec);
        let api = self.namespaced::<Secret>();
        let found = overlapped(names.clone(), |name| {
            let api = api.clone();
            async move { api.get_opt(&name).await }
        })
        .await?;
        Ok(names
            .into_iter()
            .zip(found)
            .filter_map(|(n, s)| Some((n, s?)))
            .collect())
    }

    /// The ConfigMaps that may override the load balancers' templates: none for a cluster
    /// without load balancers.
    pub(super) fn template_config_map_names(&self) -> &'static [&'static str] {
        let services = &self.cluster.spec.services;
        if services.load_balancer_control_plane.is_empty()
            && services.load_balancer_worker.is_empty()
        {
            &[]
        } else {
            &services::TEMPLATE_CONFIG_MAPS
        }
    }

    /// The template ConfigMaps that exist, by name.
    async fn template_config_maps(&self) -> kube::Result<BTreeMap<String, ConfigMap>> {
        if self.template_config_map_names().is_empty() {
            return Ok(BTreeMap::new());
        }
        let api = self.namespaced::<ConfigMap>();
        let [a, b] = services::TEMPLATE_CONFIG_MAPS;
        let found = futures::try_join!(api.get_opt(a), api.get_opt(b))?;
        Ok([(a, found.0), (b, found.1)]
            .into_iter()
            .filter_map(|(n, cm)| Some((n.to_string(), cm?)))
            .collect())
    }

    /// Every object the services are rendered from: the Secrets the spec names, the template
    /// ConfigMaps (with load balancers), the members' BMC credentials (with a jump host).
    pub(super) fn source_refs(&self) -> Vec<SourceRef> {
        let spec = &self.cluster.spec;
        let namespace = &self.key.namespace;
        let mut refs: Vec<SourceRef> = services::referenced_secrets(spec)
            .iter()
            .map(|name| SourceRef::secret(namespace, name))
            .collect();
        refs.extend(
            self.template_config_map_names()
                .iter()
                .map(|name| SourceRef::config_map(namespace, name)),
        );
        if services::needs_credentials(spec) {
            refs.extend(
                self.members()
                    .into_iter()
                    .filter_map(|(_, host)| credentials_secret_ref(host.as_deref()?))
                    .map(|(ns, name)| SourceRef::secret(&ns, &name)),
            );
        }
        refs
    }

    /// The members as the cache holds them (`None`: gone from it).
    pub(super) fn members(&self) -> Vec<(HostKey, Option<Arc<BareMetalHost>>)> {
        self.status
            .hosts
            .iter()
            .filter(|h| h.state.is_member())
            .map(|record| {
                let key = HostKey::of_record(record);
                let host = self
                    .ctx
                    .hosts
                    .get(&ObjectRef::new(key.name()).within(key.namespace()));
                (key, host)
            })
            .collect()
    }

    /// BMC credentials of every member, for the jump host's host list (none when no service
    /// needs them), and the version of each credentials Secret read (`None`: absent). A host
    /// whose Secret went bad since Extracting fails the jump host, naming it.
    async fn member_credentials(&self) -> kube::Result<(MemberCredentials, SecretVersions)> {
        if !services::needs_credentials(&self.cluster.spec) {
            return Ok(Default::default());
        }
        let members = self.members();
        let refs: Vec<_> = members
            .iter()
            .map(|(_, host)| host.as_deref().and_then(credentials_secret_ref))
            .collect();
        let client = &self.ctx.client;
        let secrets = overlapped(refs.clone(), |r| read_secret(client.clone(), r)).await?;
        let versions = refs
            .into_iter()
            .zip(&secrets)
            .filter_map(|(r, s)| Some((r?, s.as_ref().and_then(|s| s.resource_version()))))
            .collect();
        let credentials = members
            .into_iter()
            .zip(secrets)
            .map(|((key, host), secret)| {
                let outcome = match host {
                    None => Err(format!("host {key} is gone")),
                    Some(host) => {
                        read_credentials(&host, secret.as_ref()).map_err(|e| e.to_string())
                    }
                };
                (key, outcome)
            })
            .collect();
        Ok((credentials, versions))
    }

    /// A rendered service applied, or why it could not be.
    async fn apply_service(
        &self,
        rendered: &services::Rendered,
    ) -> kube::Result<Result<(), ServiceError>> {
        match &rendered.objects {
            Ok(objects) => self.apply_all(rendered.id, objects).await,
            Err(e) => Ok(Err(e.clone())),
        }
    }

    /// Applies a service's objects in two waves: first what its pods use (ServiceAccount,
    /// ConfigMaps, Secrets), so they never start without it; then the Deployment and its
    /// Service, which need nothing of each other. Objects of a wave are applied together. The
    /// API server refusing one (a node port taken, a cluster IP outside the range) fails the
    /// service, naming the first refused in render order; other errors end the turn.
    async fn apply_all(
        &self,
        id: services::ServiceId,
        objects: &[Child],
    ) -> kube::Result<Result<(), ServiceError>> {
        let (first, second): (Vec<&Child>, Vec<&Child>) = objects
            .iter()
            .partition(|c| !matches!(c, Child::Service(_) | Child::Deployment(_)));
        for wave in [first, second] {
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
        let params = PatchParams::apply(&self.ctx.manager)
            .force()
            .validation_strict();
        let kind = drift::kind_of::<K>();
        let child = ChildRef::new(kind, &self.key.namespace, &object.name_any());
        self.ctx.drift.writing(&child);
        let applied = self
            .namespaced::<K>()
            .patch(&object.name_any(), &params, &Patch::Apply(object))
            .await;
        let version = applied
            .as_ref()
            .ok()
            .and_then(|o| drift::version(kind, o.meta()));
        self.ctx.drift.written(&child, version);
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
    async fn prune(&self, keep: &BTreeSet<ChildKey>) -> kube::Result<usize> {
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
            deleted += self.delete::<ConfigMap>(&name).await?;
            deleted += self.delete::<ServiceAccount>(&name).await?;
            deleted += self.delete::<Deployment>(&name).await?;
        }
        Ok(deleted)
    }

    /// Deletes one object; 1 if it was there.
    async fn delete<K>(&self, name: &str) -> kube::Result<usize>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let child = ChildRef::new(drift::kind_of::<K>(), &self.key.namespace, name);
        self.ctx.drift.deleting(&child);
        match self
            .namespaced::<K>()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(1),
            Err(kube::Error::Api(s)) if s.code == 404 => {
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

//! DeployingInfra: read what rendering needs (the Secrets the spec names, the template
//! ConfigMaps, the members' BMC credentials), render every service, apply each one's objects
//! (`apply.rs`), and delete the objects of services the spec no longer has. Records the
//! versions of what it rendered from, which the Ready check compares.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::api::ServiceStatus;
use crate::controller::conditions::reason;
use crate::controller::sources::{SourceRef, Sources};
use crate::controller::step::Step;
use crate::extraction::{BmcCredentials, credentials_secret_ref, read_credentials};
use crate::machine::Event;
use crate::scheduling::HostKey;
use crate::services::{self, Facts, ServiceError};

use super::Turn;
use super::apply::ChildKey;
use super::io::overlapped;
use super::predecessor::Leftovers;

/// Each member's BMC credentials, or why they cannot be read.
type MemberCredentials = BTreeMap<HostKey, Result<BmcCredentials, String>>;
/// `(namespace, name)` of Secrets read, and their versions (`None`: absent).
type SecretVersions = Vec<((String, String), Option<String>)>;

impl Turn<'_> {
    pub async fn deploy(&mut self) -> kube::Result<Step> {
        // A member deleted since it was chosen is replaced before anything is rendered for it.
        if let Some((key, _)) = self.members().into_iter().find(|(_, h)| h.is_none()) {
            return Ok(Step::trouble(
                Event::Regather,
                "HostLost",
                format!("host {key} is gone"),
            ));
        }
        // Every object is applied again now: what drifted before is repaired by this.
        let _ = self.ctx.drift.take(&ObjectRef::from_obj(self.cluster));
        let started = std::time::Instant::now();
        // What rendering reads is read at once.
        let (secrets, host_keys, config_maps, (credentials, credential_versions), mut leftovers) =
            futures::try_join!(
                self.referenced_secrets(),
                self.host_keys(),
                self.template_config_maps(),
                self.member_credentials(),
                self.leftovers_until_applied(),
            )?;
        let sources = self.sources(&secrets, &config_maps, credential_versions);
        let Some(owner) = self.cluster.controller_owner_ref(&()) else {
            // Only an object never stored lacks a uid; the turn read it from the API server.
            return Ok(Step::blocked(
                reason::INFRA_SERVICE_FAILURE,
                "NoUid",
                "the SIPCluster has no uid to own its services by".into(),
            ));
        };
        let rendered = self
            .render(owner, [secrets, host_keys], config_maps, credentials)
            .await;
        self.status.sources_version = Some(sources.sum());
        let desired: BTreeSet<ChildKey> = rendered
            .iter()
            .filter_map(|r| r.objects.as_ref().ok())
            .flatten()
            .map(|c| (c.kind(), c.name().to_string()))
            .collect();
        let mut removed = self.make_way(&mut leftovers, &rendered).await?;
        // Services do not depend on each other: each applies its objects in order while the
        // others apply theirs.
        let read = started.elapsed();
        let outcomes = futures::future::join_all(rendered.iter().map(|r| self.apply_service(r)))
            .await
            .into_iter()
            .collect::<kube::Result<Vec<_>>>()?;
        tracing::debug!(?read, applied = ?(started.elapsed() - read), "services read and applied");
        for found in &mut leftovers.found {
            let replacement = rendered.iter().zip(&outcomes).find(|(r, o)| {
                r.id.kind == found.legacy.replaced_by && r.id.index == 0 && o.is_ok()
            });
            if replacement.is_some() {
                removed.extend(self.remove_predecessors(found, true).await?);
            }
        }
        self.tell_removed(&removed).await;
        self.finish(rendered, outcomes, &desired).await
    }

    /// The versions of exactly what is rendered: a change after this read is a change.
    fn sources(
        &self,
        secrets: &BTreeMap<String, Secret>,
        config_maps: &BTreeMap<String, ConfigMap>,
        credential_versions: SecretVersions,
    ) -> Sources {
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
        sources
    }

    /// The predecessor's Services hold the node ports sip's ask for: they go first, once
    /// their replacement rendered (a replacement that failed leaves theirs serving). What
    /// was removed.
    async fn make_way(
        &self,
        leftovers: &mut Leftovers,
        rendered: &[services::Rendered],
    ) -> kube::Result<Vec<String>> {
        let mut removed = Vec::new();
        for found in &mut leftovers.found {
            let replacement = rendered
                .iter()
                .find(|r| r.id.kind == found.legacy.replaced_by && r.id.index == 0);
            match replacement {
                None => removed.extend(self.remove_predecessors(found, true).await?),
                Some(r) if r.objects.is_ok() => {
                    removed.extend(self.remove_predecessors(found, false).await?)
                }
                Some(_) => {}
            }
        }
        Ok(removed)
    }

    /// The services' statuses from what applying each did; with every one applied, the
    /// objects of services the spec no longer has are deleted.
    async fn finish(
        &mut self,
        rendered: Vec<services::Rendered>,
        outcomes: Vec<Result<(), ServiceError>>,
        desired: &BTreeSet<ChildKey>,
    ) -> kube::Result<Step> {
        let mut failures = Vec::new();
        let statuses = rendered
            .into_iter()
            .zip(outcomes)
            .map(|(r, outcome)| {
                if let Err(e) = &outcome {
                    failures.push(e.to_string());
                }
                ServiceStatus {
                    service: r.id.kind.field().into(),
                    index: r.id.index as u32,
                    name: r.name,
                    ready: outcome.is_ok(),
                    message: outcome.as_ref().err().map(ToString::to_string),
                }
            })
            .collect();
        let previous = std::mem::replace(&mut self.status.services, statuses);
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
            .any(|s| !desired.contains(&("Deployment", s.name.clone())));
        let pruned = if removed {
            self.prune(desired).await?
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

    /// Every service rendered on a thread of its own, so neither a slow template nor a child
    /// renderer's wait holds the runtime (the Lease's renewal among what it runs).
    async fn render(
        &self,
        owner: OwnerReference,
        [secrets, host_keys]: [BTreeMap<String, Secret>; 2],
        config_maps: BTreeMap<String, ConfigMap>,
        credentials: MemberCredentials,
    ) -> Vec<services::Rendered> {
        let cluster_name = self.key.name.clone();
        let namespace = self.key.namespace.clone();
        let spec = self.cluster.spec.clone();
        let hosts = self.status.hosts.clone();
        let renderer = self.ctx.renderer.clone();
        let job = move || {
            services::render(&Facts {
                cluster_name: &cluster_name,
                namespace: &namespace,
                spec: &spec,
                owner,
                hosts: &hosts,
                secrets: &secrets,
                host_keys: &host_keys,
                config_maps: &config_maps,
                credentials: &credentials,
                renderer: &renderer,
            })
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(rendered) => rendered,
            // Rendering is pure and bounded: a panic there is a bug, surfaced as one.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// What the predecessor left: looked for at the first deployment (in the watch of its
    /// Deployments), and by name after a failed one.
    async fn leftovers_until_applied(&self) -> kube::Result<Leftovers> {
        let services = &self.status.services;
        if self.status.sources_version.is_none() {
            self.predecessors_leftovers(false).await
        } else if services.iter().any(|s| !s.ready) {
            self.predecessors_leftovers(true).await
        } else {
            Ok(Leftovers::default())
        }
    }

    /// The Secrets the spec names (authorized keys and the like) that exist, by name.
    pub(super) async fn referenced_secrets(&self) -> kube::Result<BTreeMap<String, Secret>> {
        self.secrets_named(services::referenced_secrets(&self.cluster.spec))
            .await
    }

    /// The jump hosts' host key Secrets that exist: a jump host keeps its key for life. Not a
    /// source of the services (the operator writes them), so not versioned.
    pub(super) async fn host_keys(&self) -> kube::Result<BTreeMap<String, Secret>> {
        self.secrets_named(self.host_key_names()).await
    }

    /// The names of the jump hosts' host key Secrets, one per jump host of the spec.
    pub(super) fn host_key_names(&self) -> BTreeSet<String> {
        services::instances(&self.cluster.spec)
            .into_iter()
            .filter(|id| id.kind == services::ServiceKind::JumpHost)
            .map(|id| {
                services::host_key_secret_name(&services::meta::object_name(&self.key.name, id))
            })
            .collect()
    }

    /// Those of the Secrets `names` (in the cluster's namespace) that exist.
    async fn secrets_named(
        &self,
        names: BTreeSet<String>,
    ) -> kube::Result<BTreeMap<String, Secret>> {
        let namespace = &self.key.namespace;
        let found = overlapped(names.clone(), |name| {
            self.secret(Some((namespace.clone(), name)))
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
    fn template_config_map_names(&self) -> &'static [&'static str] {
        if services::uses_templates(&self.cluster.spec) {
            &services::TEMPLATE_CONFIG_MAPS
        } else {
            &[]
        }
    }

    /// The template ConfigMaps that exist, by name.
    async fn template_config_maps(&self) -> kube::Result<BTreeMap<String, ConfigMap>> {
        if self.template_config_map_names().is_empty() {
            return Ok(BTreeMap::new());
        }
        let (reads, namespace) = (&self.ctx.reads, &self.key.namespace);
        let [a, b] = services::TEMPLATE_CONFIG_MAPS;
        let found = futures::try_join!(
            reads.config_map(namespace, a),
            reads.config_map(namespace, b)
        )?;
        for (name, cm) in [(a, &found.0), (b, &found.1)] {
            let version = cm.as_ref().and_then(|c| c.resource_version());
            self.saw(SourceRef::config_map(&self.key.namespace, name), version);
        }
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
        let secrets = overlapped(refs.clone(), |r| self.secret(r)).await?;
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
            Ok(objects) => {
                let fresh = !self.deployed(&rendered.name);
                self.apply_all(rendered.id, objects, fresh).await
            }
            Err(e) => Ok(Err(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::api::HostState;
    use crate::controller::phases::{Turn, test_cluster};
    use crate::controller::testing::{Objects, context};
    use crate::machine::Event;

    #[tokio::test]
    async fn a_member_gone_since_extracting_sends_the_cluster_back_to_gathering_unapplied() {
        let cluster = test_cluster(HostState::Extracted);
        let objects = Arc::new(Objects::default());
        // The host cache is empty: cp-1 was deleted.
        let ctx = context(objects.clone(), Vec::new());
        let mut turn = Turn::new(&ctx, &cluster);
        // Any apply would reach the test's refusing client and fail this.
        let step = turn.deploy().await.expect("no request");
        assert_eq!(
            (step.event, step.reason, step.message.as_str()),
            (
                Some(Event::Regather),
                "HostLost",
                "host metal3/cp-1 is gone"
            )
        );
        assert!(step.warning);
        assert!(objects.read().is_empty(), "{:?}", objects.read());
    }
}

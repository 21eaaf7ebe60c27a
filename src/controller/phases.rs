//! The work of each phase, on a working copy of the status. Each returns what it found as a
//! machine [`Event`] (or none: stay and retry later) with a reason for the story.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::conditions::reason;
use super::drift::{ChildRef, EVERY_SERVICE_HAS};
use super::hosts::{self, Labeled};
use super::sources::{SourceKind, Sources};
use crate::api::{BareMetalHost, HostState, SIPCluster, SIPClusterStatus};
use crate::extraction::{
    self, HostSecrets, credentials_secret_ref, network_data_secret_ref, required_interfaces,
};
use crate::machine::Event;
use crate::scheduling::{ClusterKey, HostKey, HostView, Inputs, schedule};

/// Requests for one cluster's objects that may be waiting on the API server at once: enough to
/// overlap the round trips (they share one HTTP/2 connection), few enough that one cluster's
/// turn does not crowd out the API server's other clients.
const REQUESTS_IN_FLIGHT: usize = 4;

/// What a phase's work concluded.
pub struct Step {
    pub event: Option<Event>,
    /// PascalCase, for the history and the Event.
    pub reason: &'static str,
    pub message: String,
    /// When no event: Ready=False with this condition reason, and retry after a backoff.
    pub blocked: Option<&'static str>,
    /// Something went wrong on the way (a host lost, unusable, taken): a Warning Event.
    pub warning: bool,
}

impl Step {
    /// Progress as planned.
    pub fn go(event: Event, reason: &'static str, message: impl Into<String>) -> Self {
        Step {
            event: Some(event),
            reason,
            message: message.into(),
            blocked: None,
            warning: false,
        }
    }

    /// A transition forced by trouble: a Warning Event tells the story.
    pub fn trouble(event: Event, reason: &'static str, message: impl Into<String>) -> Self {
        Step {
            warning: true,
            ..Step::go(event, reason, message)
        }
    }

    /// First sight of a cluster: it enters the initial phase, recorded like a transition.
    pub fn entered() -> Self {
        Step {
            event: None,
            reason: "Created",
            message: String::new(),
            blocked: None,
            warning: false,
        }
    }

    pub(super) fn blocked(condition: &'static str, reason: &'static str, message: String) -> Self {
        Step {
            event: None,
            reason,
            message,
            blocked: Some(condition),
            warning: true,
        }
    }
}

/// Retry delay for a blocked cluster: grows with the attempts, with jitter, capped.
pub fn backoff(attempts: u32) -> Duration {
    let base = 2u64.saturating_pow(attempts.min(8)).min(300);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis() as u64 % 1000);
    Duration::from_millis(base * 1000 + jitter)
}

pub struct Turn<'a> {
    pub ctx: &'a Context,
    pub cluster: &'a SIPCluster,
    pub key: ClusterKey,
    pub status: SIPClusterStatus,
}

impl<'a> Turn<'a> {
    /// A turn on `cluster`, starting from its persisted status.
    pub fn new(ctx: &'a Context, cluster: &'a SIPCluster) -> Self {
        Turn {
            ctx,
            cluster,
            key: ClusterKey::new(
                cluster.metadata.namespace.clone().unwrap_or_default(),
                cluster.metadata.name.clone().unwrap_or_default(),
            ),
            status: cluster.status.clone().unwrap_or_default(),
        }
    }

    fn hosts_snapshot(&self) -> Vec<Arc<HostView>> {
        let hosts = self.ctx.hosts.state();
        self.ctx
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot(&hosts)
    }

    /// Hosts in other SIPClusters' ledgers. To choose hosts (`fresh`) they are read from the
    /// API server, not the cache: a claim written a moment ago by the previous reconcile must be
    /// seen. To check members the cache serves: no one takes a host in this ledger, since every
    /// cluster reads the ledgers fresh before choosing. At worst a stale cache shows a member
    /// still in a ledger that released it; the regather that follows reads fresh and keeps it.
    async fn claims_elsewhere(&self, fresh: bool) -> kube::Result<HashSet<HostKey>> {
        let clusters: Vec<SIPCluster> = if fresh {
            let all: Api<SIPCluster> = Api::all(self.ctx.client.clone());
            all.list(&ListParams::default()).await?.items
        } else {
            self.ctx
                .clusters
                .state()
                .iter()
                .map(|c| (**c).clone())
                .collect()
        };
        Ok(clusters
            .iter()
            .filter(|c| {
                c.metadata.namespace.as_deref() != Some(&self.key.namespace)
                    || c.metadata.name.as_deref() != Some(&self.key.name)
            })
            .flat_map(|c| c.status.iter().flat_map(|s| s.hosts.iter()))
            .filter(|r| r.state.claims())
            .map(HostKey::of_record)
            .collect())
    }

    /// The decision on the current snapshot, without acting on it; `fresh`: see
    /// [`Turn::claims_elsewhere`].
    async fn decide(&self, fresh: bool) -> kube::Result<crate::scheduling::Decision> {
        let started = std::time::Instant::now();
        let hosts = self.hosts_snapshot();
        let viewed = started.elapsed();
        let claimed = self.claims_elsewhere(fresh).await?;
        let listed = started.elapsed();
        let decision = schedule(&Inputs {
            cluster: &self.key,
            spec: &self.cluster.spec,
            ledger: &self.status.hosts,
            hosts: &hosts,
            claimed_elsewhere: &claimed,
        });
        tracing::debug!(
            hosts = hosts.len(),
            viewed = ?viewed,
            claims_read = ?(listed - viewed),
            decided = ?(started.elapsed() - listed),
            "scheduled"
        );
        Ok(decision)
    }

    pub async fn gather(&mut self) -> kube::Result<Step> {
        let decision = self.decide(true).await?;
        self.status.hosts = decision.apply_to(&self.status.hosts);
        if !decision.is_schedulable() {
            let why: Vec<String> = decision.shortfalls().map(ToString::to_string).collect();
            // Hosts found unusable get another chance after the backoff: their Secrets may
            // have been fixed. They were never labeled, so dropping them loses nothing.
            self.status.hosts.retain(|h| h.state != HostState::Unusable);
            return Ok(Step::blocked(
                reason::UNSCHEDULABLE,
                "Unschedulable",
                why.join("; "),
            ));
        }
        let added: usize = decision.roles.values().map(|r| r.add.len()).sum();
        let released: usize = decision.roles.values().map(|r| r.release.len()).sum();
        Ok(Step::go(
            Event::Done,
            "HostsChosen",
            format!("{added} hosts added, {released} released"),
        ))
    }

    pub async fn extract(&mut self) -> kube::Result<Step> {
        let needs = required_interfaces(&self.cluster.spec.services);
        let mut pending = Vec::new();
        for (i, record) in self.status.hosts.iter().enumerate() {
            if !extraction::needs_extraction(record, &needs) {
                continue;
            }
            let key = HostKey::of_record(record);
            let host = self
                .ctx
                .hosts
                .get(&ObjectRef::new(key.name()).within(key.namespace()));
            let Some(host) = host else {
                return Ok(Step::trouble(
                    Event::Regather,
                    "HostLost",
                    format!("host {key} is gone"),
                ));
            };
            pending.push((i, host));
        }
        // Each read waits a round trip and no read depends on another: they overlap, in order.
        let refs: Vec<_> = pending
            .iter()
            .flat_map(|(_, host)| [network_data_secret_ref(host), credentials_secret_ref(host)])
            .collect();
        let client = &self.ctx.client;
        let read = overlapped(refs, |r| read_secret(client.clone(), r)).await?;
        // Two per host, in order: its networkData, then its credentials.
        let mut read = read.into_iter();
        let secrets: Vec<(Option<Secret>, Option<Secret>)> = pending
            .iter()
            .map(|_| (read.next().flatten(), read.next().flatten()))
            .collect();
        let mut unusable = Vec::new();
        for ((i, host), (nd, cr)) in pending.iter().zip(&secrets) {
            let outcome = extraction::extract(
                host,
                &needs,
                HostSecrets {
                    network_data: nd.as_ref(),
                    credentials: cr.as_ref(),
                },
            );
            if let Err(e) = &outcome {
                unusable.push(e.to_string());
            }
            extraction::record_outcome(&mut self.status.hosts[*i], &outcome);
        }
        if unusable.is_empty() {
            Ok(Step::go(
                Event::Done,
                "HostsExtracted",
                "addresses and BMC details read",
            ))
        } else {
            Ok(Step::trouble(
                Event::HostUnusable,
                "HostUnusable",
                unusable.join("; "),
            ))
        }
    }

    pub async fn label(&mut self) -> kube::Result<Step> {
        let manager = self.ctx.manager.as_str();
        // Released and unusable hosts lose this cluster's labels first.
        let mut pending = false;
        for i in 0..self.status.hosts.len() {
            let record = &self.status.hosts[i];
            if record.state.is_member() {
                continue;
            }
            let api = self.hosts_api(&record.namespace);
            if !hosts::unlabel(&api, record, &self.key, manager).await? {
                pending = true;
            }
        }
        if pending {
            return Ok(Step::trouble(
                Event::Regather,
                "LabelConflict",
                "a released host changed while being unlabeled",
            ));
        }
        self.status
            .hosts
            .retain(|h| h.state != HostState::Releasing);

        // Each host's patch is independent of the others': they overlap, and their outcomes
        // are read in ledger order.
        let members: Vec<(usize, HostKey)> = self
            .status
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, HostState::Extracted | HostState::Labeled))
            .map(|(i, r)| (i, HostKey::of_record(r)))
            .collect();
        let work: Vec<_> = members
            .iter()
            .map(|(i, key)| {
                let record = self.status.hosts[*i].clone();
                let cached = self
                    .ctx
                    .hosts
                    .get(&ObjectRef::new(key.name()).within(key.namespace()));
                (self.hosts_api(&record.namespace), record, cached)
            })
            .collect();
        let cluster = &self.key;
        let outcomes = overlapped(work, |(api, record, cached)| async move {
            hosts::label(&api, cached.as_deref(), &record, cluster, manager).await
        })
        .await?;
        let mut trouble = None;
        for ((i, key), outcome) in members.into_iter().zip(outcomes) {
            match outcome {
                Labeled::Done => self.status.hosts[i].state = HostState::Labeled,
                other => {
                    trouble.get_or_insert((i, key, other));
                }
            }
        }
        match trouble {
            None => {}
            Some((i, key, Labeled::Taken)) => {
                let r = &mut self.status.hosts[i];
                r.state = HostState::Unusable;
                r.reason = Some(format!("host {key} was labeled for another SIPCluster"));
                return Ok(Step::trouble(
                    Event::HostUnusable,
                    "HostTaken",
                    format!("host {key} was taken by another SIPCluster"),
                ));
            }
            Some((_, key, Labeled::Gone)) => {
                return Ok(Step::trouble(
                    Event::Regather,
                    "HostLost",
                    format!("host {key} is gone"),
                ));
            }
            // Done is never kept as trouble.
            Some((_, key, Labeled::Conflict | Labeled::Done)) => {
                return Ok(Step::trouble(
                    Event::Regather,
                    "LabelConflict",
                    format!("host {key} changed while being labeled"),
                ));
            }
        }
        // Unusable marks served this round; a later round may try those hosts again.
        self.status.hosts.retain(|h| h.state != HostState::Unusable);
        Ok(Step::go(
            Event::Done,
            "HostsLabeled",
            "every member carries the cluster's labels",
        ))
    }

    /// Ready: still what the spec asks for? A spec change or a lost host means choosing again;
    /// an object of the services changed or deleted by someone else means applying them again.
    pub async fn check(&mut self) -> kube::Result<Step> {
        let decision = self.decide(false).await?;
        if !decision.changes_nothing() {
            let lost: Vec<String> = decision
                .roles
                .values()
                .flat_map(|r| r.release.iter())
                .map(|r| format!("{}: {}", r.key, r.reason))
                .collect();
            return Ok(Step::trouble(Event::Regather, "HostLost", lost.join("; ")));
        }
        let mut drifted = self.ctx.drift.take(&ObjectRef::from_obj(self.cluster));
        let (secrets, sources) = futures::try_join!(self.secrets_drifted(), self.sources_now())?;
        drifted.extend(secrets);
        if drifted.is_empty() {
            // A deletion while the operator was not running has no event.
            let namespace = &self.key.namespace;
            let expected = self
                .status
                .services
                .iter()
                .filter(|s| s.ready)
                .flat_map(|s| {
                    EVERY_SERVICE_HAS.map(|kind| ChildRef::new(kind, namespace, &s.name))
                });
            drifted.extend(self.ctx.drift.missing(expected));
        }
        if self.status.sources_version.as_deref() != Some(sources.sum().as_str()) {
            drifted.push(
                "a Secret or ConfigMap they are rendered from changed (SSH keys, Dex \
                 configuration, templates or BMC credentials)"
                    .into(),
            );
        }
        if drifted.is_empty() {
            Ok(Step::go(Event::Done, "Ready", ""))
        } else {
            Ok(Step::trouble(
                Event::Drift,
                "ServiceDrift",
                format!("{}: applying the services again", drifted.join(", ")),
            ))
        }
    }

    /// The services' Secrets, which the operator may not watch: read each (metadata only) and
    /// compare with what it wrote.
    async fn secrets_drifted(&self) -> kube::Result<Vec<String>> {
        let (client, namespace) = (&self.ctx.client, &self.key.namespace);
        let names: Vec<String> = self
            .status
            .services
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.name.clone())
            .collect();
        let found = overlapped(names.clone(), |name| {
            let (client, namespace) = (client.clone(), namespace.clone());
            async move { version_of::<Secret>(client, &namespace, &name).await }
        })
        .await?;
        let mut drifted = Vec::new();
        for (name, found) in names.into_iter().zip(found) {
            let child = ChildRef::new("Secret", namespace, &name);
            match found {
                None => drifted.push(format!("Secret {name} deleted")),
                Some(version) => {
                    if !self.ctx.drift.matches(&child, &version) {
                        drifted.push(format!("Secret {name} changed"));
                    }
                }
            }
        }
        Ok(drifted)
    }

    /// The versions of what the services are rendered from, as they are now (metadata only).
    async fn sources_now(&self) -> kube::Result<Sources> {
        let refs = self.source_refs();
        let client = &self.ctx.client;
        let versions = overlapped(refs.clone(), |source| {
            let client = client.clone();
            async move {
                let (ns, name) = (&source.namespace, &source.name);
                match source.kind {
                    SourceKind::Secret => version_of::<Secret>(client, ns, name).await,
                    SourceKind::ConfigMap => version_of::<ConfigMap>(client, ns, name).await,
                }
            }
        })
        .await?;
        let mut sources = Sources::default();
        for (source, version) in refs.iter().zip(versions) {
            sources.add(source, version);
        }
        Ok(sources)
    }

    /// Decommissioning: unlabel exactly the ledger's hosts. True when all are done.
    pub async fn decommission(&mut self) -> kube::Result<bool> {
        let manager = self.ctx.manager.as_str();
        let mut done = true;
        for record in &self.status.hosts {
            let api = self.hosts_api(&record.namespace);
            done &= hosts::unlabel(&api, record, &self.key, manager).await?;
        }
        Ok(done)
    }

    fn hosts_api(&self, namespace: &str) -> Api<BareMetalHost> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }
}

/// The resourceVersion of an object, read as metadata only (`None`: it does not exist).
async fn version_of<K>(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> kube::Result<Option<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let found = Api::<K>::namespaced(client, namespace)
        .get_metadata_opt(name)
        .await?;
    Ok(found.and_then(|o| o.metadata.resource_version))
}

/// `request` for each item, [`REQUESTS_IN_FLIGHT`] at a time; the results in the items' order.
pub async fn overlapped<I, T, Fut>(
    items: impl IntoIterator<Item = I>,
    request: impl FnMut(I) -> Fut,
) -> kube::Result<Vec<T>>
where
    Fut: Future<Output = kube::Result<T>>,
{
    stream::iter(items)
        .map(request)
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await
}

/// A Secret named by `(namespace, name)`; `None` when there is no reference or no Secret.
pub async fn read_secret(
    client: kube::Client,
    reference: Option<(String, String)>,
) -> kube::Result<Option<Secret>> {
    match reference {
        None => Ok(None),
        Some((ns, name)) => Api::<Secret>::namespaced(client, &ns).get_opt(&name).await,
    }
}

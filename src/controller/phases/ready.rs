//! Ready: still what the spec asks for? A spec change or a lost host means choosing again; an
//! object of the services changed or deleted by someone else, or a Secret or ConfigMap they
//! are rendered from changed, means applying them again.

use std::time::Instant;

use kube::runtime::reflector::ObjectRef;

use crate::controller::drift::{self, ChildRef, EVERY_SERVICE_HAS};
use crate::controller::sources::{SourceKind, SourceRef, Sources};
use crate::controller::step::Step;
use crate::controller::verified::Check;
use crate::machine::Event;

use super::Turn;
use super::io::overlapped;

impl Turn<'_> {
    /// Ready: still what the spec asks for? A spec change or a lost host means choosing again;
    /// an object of the services changed or deleted by someone else means applying them again.
    pub async fn check(&mut self) -> kube::Result<Step> {
        let decision = self.decide(false).await?;
        if let Some(step) = regather(&decision) {
            return Ok(step);
        }
        // What the service Secrets and the sources are now (reads, unless nothing can have
        // changed since the last full check), then what the watches saw meanwhile, or, when
        // they saw nothing, objects missing since before a restart (a deletion while the
        // operator was not running has no event).
        let touched = self.touched;
        let full = !self
            .ctx
            .verified
            .unchanged(self.cluster, touched, Instant::now());
        self.verified = Some(Check { full, touched });
        let (secrets, sum) = if full {
            let (secrets, sources) =
                futures::try_join!(self.secrets_drifted(), self.sources_now())?;
            (secrets, sources.sum())
        } else {
            (
                Vec::new(),
                self.status.sources_version.clone().unwrap_or_default(),
            )
        };
        let namespace = &self.key.namespace;
        let expected = self
            .status
            .services
            .iter()
            .filter(|s| s.ready)
            .flat_map(|s| EVERY_SERVICE_HAS.map(|kind| ChildRef::new(kind, namespace, &s.name)));
        let mut drifted = self
            .ctx
            .drift
            .take_or_missing(&ObjectRef::from_obj(self.cluster), expected);
        drifted.extend(secrets);
        Ok(verdict(
            drifted,
            self.status.sources_version.as_deref(),
            &sum,
        ))
    }

    /// The services' Secrets, which the operator may not watch: read each (metadata only) and
    /// compare with what it wrote.
    async fn secrets_drifted(&self) -> kube::Result<Vec<String>> {
        let (reads, namespace) = (&self.ctx.reads, &self.key.namespace);
        let secret = &SourceKind::Secret.resource();
        let names: Vec<String> = self
            .status
            .services
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.name.clone())
            .collect();
        let found = overlapped(names.clone(), |name| {
            let written = self.seen_version(&SourceRef::secret(namespace, &name));
            async move {
                // (version, whether someone else wrote it after the operator's last apply)
                match written {
                    Some(version) => Ok(version.map(|v| (v, false))),
                    None => Ok(reads
                        .object_metadata(secret, namespace, &name)
                        .await?
                        .and_then(|m| {
                            let edited = drift::edited_by_others(&m);
                            Some((m.resource_version?, edited))
                        })),
                }
            }
        })
        .await?;
        let mut drifted = Vec::new();
        for (name, found) in names.into_iter().zip(found) {
            let child = ChildRef::new("Secret", namespace, &name);
            match found {
                None => drifted.push(format!("Secret {name} deleted")),
                Some((version, edited)) => {
                    if !self.ctx.drift.matches(&child, &version, edited) {
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
        let reads = &self.ctx.reads;
        let versions = overlapped(refs.clone(), |source| {
            let read = self.seen_version(&source);
            async move {
                if let Some(version) = read {
                    return Ok(version);
                }
                let resource = source.kind.resource();
                let found = reads
                    .object_metadata(&resource, &source.namespace, &source.name)
                    .await?;
                Ok(found.and_then(|m| m.resource_version))
            }
        })
        .await?;
        let mut sources = Sources::default();
        for (source, version) in refs.iter().zip(versions) {
            sources.add(source, version);
        }
        Ok(sources)
    }
}

/// Whether the hosts no longer are what the ledger says: a member lost, or a host carrying
/// this cluster's labels that the ledger lacks (someone labeled it by hand). Pure.
fn regather(decision: &crate::scheduling::Decision) -> Option<Step> {
    if decision.changes_nothing() {
        return None;
    }
    let lost: Vec<String> = decision
        .roles
        .values()
        .flat_map(|r| r.release.iter())
        .map(|r| format!("{}: {}", r.key, r.reason))
        .collect();
    let labeled = decision.adopted.iter().map(|r| {
        format!(
            "{}/{}: labeled for this cluster but not in its ledger",
            r.namespace, r.name
        )
    });
    let reason = if lost.is_empty() {
        "HostLabeled"
    } else {
        "HostLost"
    };
    let message: Vec<String> = lost.into_iter().chain(labeled).collect();
    Some(Step::trouble(Event::Regather, reason, message.join("; ")))
}

/// Whether a Ready cluster's services must be applied again: anything that drifted, or a
/// source whose versions (`now`) differ from those rendered (`rendered`). Pure.
fn verdict(mut drifted: Vec<String>, rendered: Option<&str>, now: &str) -> Step {
    if rendered != Some(now) {
        drifted.push(
            "a Secret or ConfigMap they are rendered from changed (SSH keys, Dex \
             configuration, templates or BMC credentials)"
                .into(),
        );
    }
    if drifted.is_empty() {
        Step::go(Event::Done, "Ready", "")
    } else {
        Step::trouble(
            Event::Drift,
            "ServiceDrift",
            format!("{}: applying the services again", drifted.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_labeled_by_hand_is_told_as_such_not_as_lost() {
        use crate::api::HostState;
        let mut decision = crate::scheduling::Decision::default();
        assert_eq!(regather(&decision), None, "nothing changed");
        decision
            .adopted
            .push(crate::controller::phases::test_record(
                "wk-9",
                HostState::Chosen,
            ));
        let step = regather(&decision).expect("a regather");
        assert_eq!(
            (step.event, step.reason),
            (Some(Event::Regather), "HostLabeled")
        );
        assert_eq!(
            step.message,
            "metal3/wk-9: labeled for this cluster but not in its ledger"
        );
    }

    #[test]
    fn drift_or_changed_sources_apply_the_services_again() {
        let changed = vec!["Deployment tenant-jump-host changed".to_string()];
        let cases = [
            (vec![], Some("v1"), "v1", Event::Done, "", "nothing changed"),
            (
                changed.clone(),
                Some("v1"),
                "v1",
                Event::Drift,
                "tenant-jump-host",
                "an object",
            ),
            (
                vec![],
                Some("v1"),
                "v2",
                Event::Drift,
                "rendered from changed",
                "a source",
            ),
            (
                vec![],
                None,
                "v1",
                Event::Drift,
                "rendered from changed",
                "never recorded",
            ),
        ];
        for (drifted, rendered, now, event, says, msg) in cases {
            let step = verdict(drifted, rendered, now);
            assert_eq!(step.event, Some(event), "{msg}");
            assert!(step.message.contains(says), "{msg}: {}", step.message);
        }
    }

    /// Objects holding every source of `cluster`'s services at `version`.
    fn sources_at(turn: &Turn<'_>, version: &str) -> crate::controller::testing::Objects {
        use crate::controller::sources::SourceKind;
        let mut objects = crate::controller::testing::Objects::default();
        for source in turn.source_refs() {
            let key = (source.namespace.clone(), source.name.clone());
            let metadata = kube::api::ObjectMeta {
                resource_version: Some(version.into()),
                ..Default::default()
            };
            match source.kind {
                SourceKind::Secret => {
                    let secret = k8s_openapi::api::core::v1::Secret {
                        metadata,
                        ..Default::default()
                    };
                    objects.secrets.insert(key, secret);
                }
                SourceKind::ConfigMap => {
                    let config_map = k8s_openapi::api::core::v1::ConfigMap {
                        metadata,
                        ..Default::default()
                    };
                    objects.config_maps.insert(key, config_map);
                }
            }
        }
        objects
    }

    #[tokio::test]
    async fn the_ready_check_reads_the_sources_metadata_and_sees_a_change() {
        use std::sync::Arc;

        use crate::api::{SIPCluster, SIPClusterSpec, SIPClusterStatus};
        use crate::controller::sources::Sources;
        use crate::controller::testing::context;

        let mut cluster = SIPCluster::new(
            "tenant-a",
            SIPClusterSpec {
                services: crate::extraction::tests::services("oam-ipv4", "oam-ipv4"),
                ..Default::default()
            },
        );
        cluster.metadata.namespace = Some("sip".into());
        let placeholder = context(Arc::default(), Vec::new());
        let refs = Turn::new(&placeholder, &cluster).source_refs();
        assert!(refs.len() >= 3, "the SSH keys and two templates: {refs:?}");
        let mut rendered = Sources::default();
        for source in &refs {
            rendered.add(source, Some("1".into()));
        }
        cluster.status = Some(SIPClusterStatus {
            sources_version: Some(rendered.sum()),
            ..Default::default()
        });

        for (version, expected) in [("1", "Ready"), ("2", "ServiceDrift")] {
            let objects = Arc::new(sources_at(&Turn::new(&placeholder, &cluster), version));
            let ctx = context(objects.clone(), Vec::new());
            let mut turn = Turn::new(&ctx, &cluster);
            let step = turn.check().await.expect("no request reaches a server");
            assert_eq!(
                step.reason, expected,
                "sources at {version}: {}",
                step.message
            );
            // Metadata only, each source once; the cache serves the hosts and the ledgers.
            let mut read = objects.read();
            read.sort();
            let mut wanted: Vec<String> = refs
                .iter()
                .map(|r| format!("{:?} metadata {}/{}", r.kind, r.namespace, r.name))
                .collect();
            wanted.sort();
            assert_eq!(read, wanted);
        }
    }
}

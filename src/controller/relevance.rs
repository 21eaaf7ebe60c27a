//! Which BareMetalHost events matter: metal3 updates a host's status often on a real fleet,
//! and an event that changes nothing scheduling or extraction reads must neither wake a
//! cluster nor let a held one through its backoff.

use std::hash::{DefaultHasher, Hash, Hasher};

use super::relist::Listed;
use crate::api::BareMetalHost;
use crate::scheduling::{HostKey, HostView};

/// A hash of what the operator reads of a host: its identity and labels, what makes it
/// unavailable (deletion, paused, errored, unhealthy), the release request, its consumer, and
/// the networkData and BMC references.
pub fn fingerprint(host: &BareMetalHost) -> u64 {
    let view = HostView::from_host(host);
    let mut h = DefaultHasher::new();
    (
        &view.uid,
        &*view.labels,
        view.deleting,
        view.paused,
        view.errored,
        view.unhealthy,
        view.release_requested,
        &view.consumer,
    )
        .hash(&mut h);
    let spec = &host.spec;
    spec.network_data
        .as_ref()
        .map(|r| (&r.name, &r.namespace))
        .hash(&mut h);
    spec.bmc
        .as_ref()
        .map(|b| (&b.address, &b.credentials_name))
        .hash(&mut h);
    h.finish()
}

/// The fingerprints of the hosts seen so far, by name (an `ObjectRef` key would also copy each
/// host's uid and resourceVersion: at 10,000 hosts, megabytes for nothing).
///
/// A (re)list after a watch gap is judged like events, host by host, and then what it no
/// longer holds counts as deleted (`relist.rs`): a host created in the gap is new, one deleted
/// in it is gone and its fingerprint freed. (The reflector swaps the list into the cache only
/// when it is complete, so whom it concerns is woken then, not host by host.)
#[derive(Default)]
pub struct Relevance(Listed<HostKey, u64>);

impl Relevance {
    /// Whether this event for `host` changed what the operator reads: a new host, a changed
    /// fingerprint, or a deletion (`gone`: the cache no longer holds it).
    pub fn changed(&mut self, host: &BareMetalHost, gone: bool) -> bool {
        let key = key_of(host);
        if gone {
            return self.0.remove(&key).is_some();
        }
        let now = fingerprint(host);
        self.0.insert(key, now) != Some(now)
    }

    /// A (re)list begins.
    pub fn list_started(&mut self) {
        self.0.list_started();
    }

    /// A host the list brought: whether it changed what the operator reads.
    pub fn listed(&mut self, host: &BareMetalHost) -> bool {
        self.changed(host, false)
    }

    /// The list is complete: the hosts seen before that it lacks, deleted meanwhile, now
    /// forgotten.
    pub fn list_done(&mut self) -> Vec<HostKey> {
        self.0.list_done().into_iter().map(|(k, _)| k).collect()
    }
}

fn key_of(host: &BareMetalHost) -> HostKey {
    HostKey::new(
        host.metadata.namespace.as_deref().unwrap_or_default(),
        host.metadata.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BareMetalHostStatus;
    use crate::api::baremetalhost::{BmcDetails, SecretReference};

    fn host() -> BareMetalHost {
        let mut h = BareMetalHost::new("wk-1", Default::default());
        h.metadata.namespace = Some("metal3".into());
        h.metadata.labels = Some([("vino.airshipit.org/flavor".into(), "worker".into())].into());
        h.spec.bmc = Some(BmcDetails {
            address: "ipmi://10.0.0.1".into(),
            credentials_name: "wk-1-bmc".into(),
            disable_certificate_verification: false,
        });
        h.spec.network_data = Some(SecretReference {
            name: Some("wk-1-nd".into()),
            namespace: None,
        });
        h
    }

    #[test]
    fn only_what_the_operator_reads_counts() {
        type Edit = fn(&mut BareMetalHost);
        let cases: [(Edit, bool, &str); 9] = [
            (|_| {}, false, "the same host again (a relist)"),
            (
                |h| h.spec.online = Some(false),
                false,
                "power intent: not read",
            ),
            (
                |h| {
                    h.status = Some(BareMetalHostStatus {
                        operational_status: Some("OK".into()),
                        ..Default::default()
                    })
                },
                false,
                "a healthy status update",
            ),
            (
                |h| {
                    h.status = Some(BareMetalHostStatus {
                        error_message: Some("BMC unreachable".into()),
                        ..Default::default()
                    })
                },
                true,
                "an error",
            ),
            (
                |h| {
                    h.metadata
                        .labels
                        .as_mut()
                        .unwrap()
                        .insert("x".into(), "y".into());
                },
                true,
                "a label",
            ),
            (
                |h| {
                    h.metadata.annotations =
                        Some([(crate::api::ANNOTATION_RELEASE.into(), String::new())].into())
                },
                true,
                "a release request",
            ),
            (
                |h| h.spec.network_data.as_mut().unwrap().name = Some("other".into()),
                true,
                "networkData moved",
            ),
            (
                |h| h.spec.bmc.as_mut().unwrap().credentials_name = "new".into(),
                true,
                "BMC credentials moved",
            ),
            (
                |h| {
                    h.metadata.deletion_timestamp =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                        ))
                },
                true,
                "being deleted",
            ),
        ];
        for (edit, counts, msg) in cases {
            let mut relevance = Relevance::default();
            assert!(
                relevance.changed(&host(), false),
                "{msg}: first sight counts"
            );
            let mut edited = host();
            edit(&mut edited);
            assert_eq!(relevance.changed(&edited, false), counts, "{msg}");
        }
    }

    #[test]
    fn a_deletion_counts_once() {
        let mut relevance = Relevance::default();
        relevance.changed(&host(), false);
        assert!(relevance.changed(&host(), true));
        assert!(!relevance.changed(&host(), true), "already gone");
    }

    #[test]
    fn a_relist_after_a_gap_counts_hosts_created_and_deleted_in_it() {
        let mut r = Relevance::default();
        let mut kept = host();
        kept.metadata.name = Some("kept".into());
        let mut deleted = host();
        deleted.metadata.name = Some("deleted".into());
        assert!(r.changed(&kept, false) && r.changed(&deleted, false));
        // The watch broke; the relist brings `kept` unchanged and `created`, not `deleted`.
        let mut created = host();
        created.metadata.name = Some("created".into());
        r.list_started();
        assert!(!r.listed(&kept), "unchanged");
        assert!(r.listed(&created), "created in the gap");
        assert_eq!(
            r.list_done(),
            [HostKey::new("metal3", "deleted")],
            "deleted in the gap"
        );
        assert!(r.changed(&deleted, false), "its fingerprint was freed");
    }
}

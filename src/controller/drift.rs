//! Drift of the services' objects: someone else edited or deleted what the operator applied.
//!
//! The operator's own writes also come back as watch events, sometimes before the write's
//! response and sometimes after the next write; so every object remembers the versions the
//! operator itself wrote, and an event is drift only when it shows a version the operator did
//! not write, or a deletion it did not make. A Deployment's version is its `generation`
//! (status updates by the Deployment controller are not drift); other kinds have no
//! generation, so their `resourceVersion` serves.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;

use crate::api::{LABEL_CLUSTER_NAME, SIPCluster};

/// The kinds of which every service has one object named after it: what the Ready check can
/// find missing.
pub const EVERY_SERVICE_HAS: [&str; 2] = ["Deployment", "Service"];

/// Versions remembered per object: enough for events that lag a few writes behind.
const REMEMBERED: usize = 4;

/// One child object, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChildRef {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ChildRef {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        ChildRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// The kind names children are known by (those of `services::Child`).
pub fn kind_of<K: kube::Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "ConfigMap" => "ConfigMap",
        "ServiceAccount" => "ServiceAccount",
        "Secret" => "Secret",
        _ => "Other",
    }
}

/// The version of `meta` that drift is judged by (see the module's doc).
pub fn version(kind: &str, meta: &ObjectMeta) -> Option<String> {
    if kind == "Deployment" {
        meta.generation.map(|g| g.to_string())
    } else {
        meta.resource_version.clone()
    }
}

#[derive(Debug)]
enum Mark {
    /// The operator is writing it: its events say nothing until the write returns.
    Writing(VecDeque<String>),
    /// The versions the operator wrote, newest last.
    Wrote(VecDeque<String>),
    /// The operator deleted it (or is deleting it): the deletion event is its own.
    Deleting,
}

#[derive(Default)]
struct Inner {
    marks: HashMap<ChildRef, Mark>,
    /// The children that exist, as the watches and the operator's own writes say.
    present: HashSet<ChildRef>,
    /// The kinds whose watch has listed everything once: only for those does absence from
    /// `present` mean the object does not exist.
    listed: HashSet<&'static str>,
    /// Per SIPCluster, what drifted since its services were last applied.
    drifted: HashMap<ObjectRef<SIPCluster>, BTreeSet<String>>,
}

/// What the operator wrote and what drifted; shared by the watch task and the reconciler.
#[derive(Default)]
pub struct Drift {
    inner: Mutex<Inner>,
    /// Wakes whoever waits for the watches' first lists.
    listing: tokio::sync::Notify,
}

impl Drift {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operator is about to write `child`.
    pub fn writing(&self, child: &ChildRef) {
        let mut inner = self.lock();
        let known = match inner.marks.remove(child) {
            Some(Mark::Writing(v) | Mark::Wrote(v)) => v,
            _ => VecDeque::new(),
        };
        inner.marks.insert(child.clone(), Mark::Writing(known));
    }

    /// The write of `child` returned this version (`None`: it failed, nothing known).
    pub fn written(&self, child: &ChildRef, version: Option<String>) {
        let mut inner = self.lock();
        let mut known = match inner.marks.remove(child) {
            Some(Mark::Writing(v) | Mark::Wrote(v)) => v,
            _ => VecDeque::new(),
        };
        // Without a version (the write failed) nothing is known: the next event is the baseline.
        if let Some(v) = version {
            inner.present.insert(child.clone());
            if !known.contains(&v) {
                known.push_back(v);
            }
            while known.len() > REMEMBERED {
                known.pop_front();
            }
            inner.marks.insert(child.clone(), Mark::Wrote(known));
        }
    }

    /// The operator is about to delete `child`.
    pub fn deleting(&self, child: &ChildRef) {
        self.lock().marks.insert(child.clone(), Mark::Deleting);
    }

    /// `child` was not there to delete: no event will come for it.
    pub fn absent(&self, child: &ChildRef) {
        self.lock().marks.remove(child);
    }

    /// A watch event for a child: `deleted` when it is gone. Returns the SIPCluster whose
    /// services drifted, if this event is drift. An object the operator has no mark for (seen
    /// first after a restart) becomes the baseline; its deletion is drift.
    pub fn observe(
        &self,
        kind: &'static str,
        meta: &ObjectMeta,
        deleted: bool,
    ) -> Option<ObjectRef<SIPCluster>> {
        let cluster = owner(meta)?;
        let child = ChildRef::new(
            kind,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        let seen = version(kind, meta);
        let mut inner = self.lock();
        if deleted {
            inner.present.remove(&child);
        } else {
            inner.present.insert(child.clone());
        }
        // What the operator knows of this object: None, Some(None) while it writes or deletes
        // it, Some(Some(ours)) when it wrote it (ours: the event shows one of its versions).
        let known = inner.marks.get(&child).map(|mark| match mark {
            Mark::Writing(_) | Mark::Deleting => None,
            Mark::Wrote(versions) => Some(seen.as_ref().is_some_and(|v| versions.contains(v))),
        });
        let deleting = matches!(inner.marks.get(&child), Some(Mark::Deleting));
        let what = match (known, deleted) {
            (Some(None), true) if deleting => {
                inner.marks.remove(&child);
                return None;
            }
            (Some(None), _) => return None,
            (Some(Some(true)), false) => return None,
            (Some(Some(false)), false) => "changed",
            (None, false) => {
                if let Some(v) = seen {
                    inner
                        .marks
                        .insert(child.clone(), Mark::Wrote(VecDeque::from([v])));
                }
                // First sight (after a restart): the baseline, unless someone else wrote it
                // after the operator's last apply, while the operator was not watching.
                if !edited_by_others(meta) {
                    return None;
                }
                "changed while the operator was not running"
            }
            (_, true) => {
                inner.marks.remove(&child);
                "deleted"
            }
        };
        inner
            .drifted
            .entry(cluster.clone())
            .or_default()
            .insert(format!("{kind} {} {what}", child.name));
        Some(cluster)
    }

    /// The watch of `kind` has listed every object once: from now on, one it has not seen
    /// does not exist.
    pub fn listed(&self, kind: &'static str) {
        self.lock().listed.insert(kind);
        self.listing.notify_waiters();
    }

    /// Waits until the watches of all `kinds` have listed once, so that the first Ready check
    /// can tell a missing object from one not seen yet.
    pub async fn until_listed(&self, kinds: &[&str]) {
        loop {
            let notified = self.listing.notified();
            tokio::pin!(notified);
            // Registered before the check, so a listing in between still wakes it.
            notified.as_mut().enable();
            if kinds.iter().all(|k| self.lock().listed.contains(k)) {
                return;
            }
            notified.await;
        }
    }

    /// What drifted for `cluster` (taken), or, when nothing did, which of `expected` are missing
    /// (deleted while the operator was not running): one look, so a deletion the watch reports
    /// meanwhile is told as a deletion, not as missing.
    pub fn take_or_missing(
        &self,
        cluster: &ObjectRef<SIPCluster>,
        expected: impl IntoIterator<Item = ChildRef>,
    ) -> Vec<String> {
        let mut inner = self.lock();
        if let Some(drifted) = inner.drifted.remove(cluster) {
            return drifted.into_iter().collect();
        }
        expected
            .into_iter()
            .filter(|c| inner.listed.contains(c.kind) && !inner.present.contains(c))
            .map(|c| format!("{} {} missing", c.kind, c.name))
            .collect()
    }

    /// Takes what drifted for `cluster` (about to apply its services again).
    pub fn take(&self, cluster: &ObjectRef<SIPCluster>) -> Vec<String> {
        self.lock()
            .drifted
            .remove(cluster)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether the operator's last write of `child` gave `version`. With no record to compare
    /// with (after a restart) `version` becomes the baseline, and it matches unless `edited`
    /// (its managed fields show a write by someone else since the operator's last apply).
    pub fn matches(&self, child: &ChildRef, version: &str, edited: bool) -> bool {
        let mut inner = self.lock();
        match inner.marks.get(child) {
            Some(Mark::Wrote(known) | Mark::Writing(known)) => known.iter().any(|v| v == version),
            Some(Mark::Deleting) => true,
            None => {
                inner.marks.insert(
                    child.clone(),
                    Mark::Wrote(VecDeque::from([version.to_string()])),
                );
                !edited
            }
        }
    }

    /// Objects the operator keeps marks for (bounded by the children that exist).
    #[cfg(test)]
    fn marked(&self) -> usize {
        self.lock().marks.len()
    }
}

/// Managers that write the services' objects as part of the cluster's normal life: the
/// Deployment controller annotates each Deployment's revision.
const EXPECTED_WRITERS: [&str; 1] = ["kube-controller-manager"];

/// Whether `meta`'s managed fields show a write to the object (not its status) by someone
/// other than the operator at or after the operator's last apply: an edit the watches may not
/// have seen (made while the operator was down). Times have a one-second grain, so a write in
/// the same second as the operator's counts as later.
pub fn edited_by_others(meta: &ObjectMeta) -> bool {
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let main = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.subresource.as_deref().is_none_or(str::is_empty)
    };
    let ours = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(super::MANAGER)
    };
    let Some(applied) = entries
        .iter()
        .filter(main)
        .filter(ours)
        .filter_map(|e| e.time.as_ref())
        .max_by_key(|t| t.0)
    else {
        return false;
    };
    entries
        .iter()
        .filter(main)
        .filter(|e| !ours(e))
        .filter(|e| !EXPECTED_WRITERS.contains(&e.manager.as_deref().unwrap_or_default()))
        .any(|e| e.time.as_ref().is_some_and(|t| t.0 >= applied.0))
}

/// The SIPCluster a child belongs to: its controller owner reference, named again by the
/// cluster-name label the operator sets (an object with only one of them is not the operator's).
fn owner(meta: &ObjectMeta) -> Option<ObjectRef<SIPCluster>> {
    let name = meta.labels.as_ref()?.get(LABEL_CLUSTER_NAME)?;
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "SIPCluster" && o.controller == Some(true) && &o.name == name);
    owned.then(|| ObjectRef::new(name).within(meta.namespace.as_deref().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(rv: &str, generation: i64) -> ObjectMeta {
        ObjectMeta {
            name: Some("tenant-lb-cp".into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            generation: Some(generation),
            labels: Some([(LABEL_CLUSTER_NAME.to_string(), "tenant".to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "airship.airshipit.org/v1".into(),
                kind: "SIPCluster".into(),
                name: "tenant".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    fn tenant() -> ObjectRef<SIPCluster> {
        ObjectRef::new("tenant").within("ns")
    }

    fn child(kind: &'static str) -> ChildRef {
        ChildRef::new(kind, "ns", "tenant-lb-cp")
    }

    #[test]
    fn the_operators_own_writes_are_not_drift_in_any_order() {
        let d = Drift::default();
        let svc = child("Service");
        // The event arrives while the write is in flight...
        d.writing(&svc);
        assert_eq!(d.observe("Service", &meta("10", 0), false), None);
        d.written(&svc, Some("10".into()));
        // ...or after it, or late, after a second write.
        assert_eq!(d.observe("Service", &meta("10", 0), false), None);
        d.writing(&svc);
        d.written(&svc, Some("14".into()));
        assert_eq!(d.observe("Service", &meta("10", 0), false), None);
        assert_eq!(d.observe("Service", &meta("14", 0), false), None);
        assert!(d.take(&tenant()).is_empty());
    }

    #[test]
    fn another_writers_change_or_deletion_is_drift_of_the_owner() {
        let d = Drift::default();
        let svc = child("Service");
        d.writing(&svc);
        d.written(&svc, Some("10".into()));
        assert_eq!(d.observe("Service", &meta("11", 0), false), Some(tenant()));
        assert_eq!(d.observe("Service", &meta("11", 0), true), Some(tenant()));
        assert_eq!(
            d.take(&tenant()),
            [
                "Service tenant-lb-cp changed",
                "Service tenant-lb-cp deleted"
            ]
        );
        assert!(d.take(&tenant()).is_empty(), "taken once");
    }

    #[test]
    fn a_deployment_drifts_on_its_spec_not_its_status() {
        let d = Drift::default();
        let dep = child("Deployment");
        d.writing(&dep);
        d.written(&dep, Some("1".into()));
        // The Deployment controller updating status: new resourceVersion, same generation.
        assert_eq!(d.observe("Deployment", &meta("20", 1), false), None);
        // Someone scaled it.
        assert_eq!(
            d.observe("Deployment", &meta("21", 2), false),
            Some(tenant())
        );
    }

    #[test]
    fn the_operators_own_deletion_is_not_drift() {
        let d = Drift::default();
        let cm = child("ConfigMap");
        d.written(&cm, Some("5".into()));
        d.deleting(&cm);
        assert_eq!(d.observe("ConfigMap", &meta("5", 0), true), None);
        assert_eq!(d.marked(), 0, "the mark goes with the object");
        // A delete that found nothing leaves no mark either.
        d.deleting(&cm);
        d.absent(&cm);
        assert_eq!(d.marked(), 0);
    }

    #[test]
    fn after_a_restart_what_exists_is_the_baseline_and_a_deletion_is_drift() {
        let d = Drift::default();
        assert_eq!(d.observe("Service", &meta("7", 0), false), None);
        assert_eq!(d.observe("Service", &meta("7", 0), false), None);
        assert_eq!(d.observe("Service", &meta("8", 0), false), Some(tenant()));
        let fresh = Drift::default();
        assert_eq!(
            fresh.observe("Service", &meta("7", 0), true),
            Some(tenant())
        );
    }

    fn written_by(entries: &[(&str, Option<&str>, i64)]) -> ObjectMeta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        ObjectMeta {
            managed_fields: Some(
                entries
                    .iter()
                    .map(|(manager, subresource, at)| ManagedFieldsEntry {
                        manager: Some(manager.to_string()),
                        subresource: subresource.map(str::to_string),
                        time: Some(Time(
                            k8s_openapi::jiff::Timestamp::from_second(*at).unwrap(),
                        )),
                        ..ManagedFieldsEntry::default()
                    })
                    .collect(),
            ),
            ..meta("7", 2)
        }
    }

    #[test]
    fn an_edit_made_while_the_operator_was_down_is_told_by_the_managed_fields() {
        let ours = crate::controller::MANAGER;
        let cases = [
            (vec![(ours, None, 10)], false, "only the operator wrote it"),
            (
                vec![(ours, None, 10), ("kubectl-edit", None, 20)],
                true,
                "edited after",
            ),
            (
                vec![(ours, None, 10), ("kubectl-edit", None, 10)],
                true,
                "in the same second",
            ),
            (
                vec![("kubectl-edit", None, 5), (ours, None, 10)],
                false,
                "repaired since",
            ),
            (
                vec![(ours, None, 10), ("kube-controller-manager", None, 20)],
                false,
                "the Deployment controller's revision annotation",
            ),
            (
                vec![(ours, None, 10), ("kubectl", Some("status"), 20)],
                false,
                "status only",
            ),
            (
                vec![("kubectl-edit", None, 20)],
                false,
                "never applied by the operator",
            ),
        ];
        for (entries, edited, msg) in cases {
            assert_eq!(edited_by_others(&written_by(&entries)), edited, "{msg}");
        }
        // First sight after a restart: the baseline, or drift when edited meanwhile.
        let d = Drift::default();
        let edited = written_by(&[(ours, None, 10), ("kubectl-edit", None, 20)]);
        assert_eq!(d.observe("Deployment", &edited, false), Some(tenant()));
        assert_eq!(
            d.take(&tenant()),
            ["Deployment tenant-lb-cp changed while the operator was not running"]
        );
        assert_eq!(d.observe("Deployment", &edited, false), None, "told once");
        let secret = child("Secret");
        assert!(!d.matches(&secret, "7", true));
        assert!(d.matches(&secret, "7", true), "the baseline is taken");
    }

    #[test]
    fn a_child_never_seen_once_its_kind_is_listed_is_missing() {
        let d = Drift::default();
        let (deployment, service) = (child("Deployment"), child("Service"));
        let both = || [deployment.clone(), service.clone()];
        // Before its watch has listed, nothing can be said to be missing.
        let look = || d.take_or_missing(&tenant(), both());
        assert!(look().is_empty());
        d.listed("Deployment");
        d.listed("Service");
        assert_eq!(
            look(),
            [
                "Deployment tenant-lb-cp missing",
                "Service tenant-lb-cp missing"
            ]
        );
        // Seen by a watch, or written by the operator (its event may come later).
        d.observe("Deployment", &meta("3", 1), false);
        d.writing(&service);
        d.written(&service, Some("4".into()));
        assert!(look().is_empty());
        // A deletion the watch saw is told as one (taken), then the object is missing.
        d.observe("Service", &meta("5", 0), true);
        assert_eq!(look(), ["Service tenant-lb-cp deleted"]);
        assert_eq!(look(), ["Service tenant-lb-cp missing"]);
    }

    #[tokio::test]
    async fn waiting_for_the_first_lists_ends_when_every_kind_has_listed() {
        let d = std::sync::Arc::new(Drift::default());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.until_listed(&["Deployment", "Service"]).await }
        });
        d.listed("Deployment");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one kind is not enough");
        d.listed("Service");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken once both kinds listed")
            .unwrap();
    }

    #[test]
    fn objects_not_owned_by_a_sipcluster_are_ignored() {
        let d = Drift::default();
        let mut m = meta("1", 0);
        m.owner_references = None;
        assert_eq!(d.observe("Service", &m, true), None);
        let mut m = meta("1", 0);
        m.labels = None;
        assert_eq!(d.observe("Service", &m, true), None);
        let mut m = meta("1", 0);
        m.owner_references.as_mut().unwrap()[0].name = "other".into();
        assert_eq!(d.observe("Service", &m, true), None);
        assert_eq!(d.marked(), 0);
    }

    #[test]
    fn a_failed_write_leaves_the_next_event_as_baseline() {
        let d = Drift::default();
        let svc = child("Service");
        d.writing(&svc);
        d.written(&svc, None);
        assert_eq!(d.observe("Service", &meta("3", 0), false), None);
        assert!(d.matches(&svc, "3", false));
        assert!(!d.matches(&svc, "4", false));
    }

    #[test]
    fn only_the_last_few_versions_are_remembered() {
        let d = Drift::default();
        let svc = child("Secret");
        for v in 1..=10 {
            d.writing(&svc);
            d.written(&svc, Some(v.to_string()));
        }
        assert!(d.matches(&svc, "10", false) && d.matches(&svc, "7", false));
        assert!(!d.matches(&svc, "6", false));
    }
}

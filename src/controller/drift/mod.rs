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

/// A write of a child in flight (see [`Drift::writing`]).
pub struct WriteGuard<'a> {
    drift: &'a Drift,
    child: &'a ChildRef,
    answered: bool,
}

impl WriteGuard<'_> {
    /// The write returned this version (`None`: it failed).
    pub fn written(mut self, version: Option<String>) {
        self.answered = true;
        self.drift.written(self.child, version);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.drift.written(self.child, None);
        }
    }
}

impl Drift {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// The operator is about to write `child`; the guard takes the answer. Dropped without
    /// one (the turn was cancelled with the request in flight), it leaves what a failed write
    /// leaves: nothing known, the next event the baseline. A mark left at `Writing` would
    /// hide every later edit of the object.
    pub fn writing<'a>(&'a self, child: &'a ChildRef) -> WriteGuard<'a> {
        let mut inner = self.lock();
        let known = match inner.marks.remove(child) {
            Some(Mark::Writing(v) | Mark::Wrote(v)) => v,
            _ => VecDeque::new(),
        };
        inner.marks.insert(child.clone(), Mark::Writing(known));
        WriteGuard {
            drift: self,
            child,
            answered: false,
        }
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

    /// Keeps what drifted for the clusters `alive` says exist; how many it holds then.
    pub fn retain(&self, alive: &dyn Fn(&ObjectRef<SIPCluster>) -> bool) -> usize {
        let mut inner = self.lock();
        inner.drifted.retain(|k, _| alive(k));
        inner.drifted.len()
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
mod tests;

//! Writes to BareMetalHosts: only the three `sip.airshipit.org/*` labels, each write guarded by
//! the resourceVersion it was decided on, so a concurrent change is a 409 ("decide again"),
//! never an overwrite. Labeling decides on the cached host first (the guard makes a stale cache
//! harmless: its write conflicts); whenever the cache would have it skip the write, or the
//! write conflicts, the host is read fresh and decided again.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::{
    BareMetalHost, HostRecord, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, LABEL_NODE_TYPE,
};
use crate::failpoint::{self, Cancel, Pause, Site};
use crate::scheduling::{ClusterKey, HostView};

/// Who writes: the controller's cancellation and pause points, if set (the field manager is
/// always `MANAGER`).
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    pub cancel: Option<&'a Cancel>,
    pub pause: Option<&'a Pause>,
}

pub enum Labeled {
    /// The host carries this cluster's labels (now or already).
    Done,
    /// Another SIPCluster's labels are on it.
    Taken,
    /// Deleted, or re-created under the same name.
    Gone,
    /// Changed between read and write.
    Conflict,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

async fn fresh(
    api: &Api<BareMetalHost>,
    record: &HostRecord,
) -> kube::Result<Option<BareMetalHost>> {
    let host = api.get_opt(&record.name).await?;
    Ok(host.filter(|h| record.uid.is_none() || h.metadata.uid == record.uid))
}

fn params(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    }
}

/// Merges `labels` into the host's labels, guarded by the resourceVersion it was read at.
/// Ok(false): the host changed in between (409), nothing was written.
async fn patch_labels(
    api: &Api<BareMetalHost>,
    host: &BareMetalHost,
    labels: Value,
    writer: Writer<'_>,
) -> kube::Result<bool> {
    let patch = Patch::Merge(json!({
        "metadata": {"resourceVersion": host.metadata.resource_version, "labels": labels}
    }));
    let name = host.metadata.name.as_deref().unwrap_or_default();
    failpoint::before_write(writer.pause, Site::Labels).await;
    match api.patch(name, &params(super::MANAGER), &patch).await {
        Ok(_) => {
            failpoint::after_write(writer.cancel, Site::Labels).await;
            Ok(true)
        }
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The labels this cluster's member `record` must carry.
fn wanted<'a>(record: &'a HostRecord, cluster: &'a ClusterKey) -> [(&'static str, &'a str); 3] {
    [
        (LABEL_CLUSTER_NAMESPACE, cluster.namespace.as_str()),
        (LABEL_CLUSTER_NAME, cluster.name.as_str()),
        (LABEL_NODE_TYPE, record.role.as_str()),
    ]
}

/// The label patch `host` needs, or why it needs none.
fn decide(
    host: &BareMetalHost,
    record: &HostRecord,
    cluster: &ClusterKey,
) -> Result<Value, Labeled> {
    let view = HostView::from_host(host);
    if view.labeled_for_other(cluster) {
        return Err(Labeled::Taken);
    }
    let want = wanted(record, cluster);
    if want
        .iter()
        .all(|(k, v)| view.labels.get(*k).map(String::as_str) == Some(*v))
    {
        return Err(Labeled::Done);
    }
    Ok(Value::Object(
        want.iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    ))
}

/// Labels `record`'s host for `cluster`. `cached`: the host as the cache has it, if it has it.
pub async fn label(
    api: &Api<BareMetalHost>,
    cached: Option<&BareMetalHost>,
    record: &HostRecord,
    cluster: &ClusterKey,
    writer: Writer<'_>,
) -> kube::Result<Labeled> {
    let cached = cached.filter(|h| record.uid.is_none() || h.metadata.uid == record.uid);
    if let Some(host) = cached
        && let Ok(labels) = decide(host, record, cluster)
    {
        match patch_labels(api, host, labels, writer).await {
            Ok(true) => return Ok(Labeled::Done),
            // Changed or gone since the cache saw it: decide on a fresh read.
            Ok(false) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let Some(host) = fresh(api, record).await? else {
        return Ok(Labeled::Gone);
    };
    match decide(&host, record, cluster) {
        Err(outcome) => Ok(outcome),
        Ok(labels) => Ok(if patch_labels(api, &host, labels, writer).await? {
            Labeled::Done
        } else {
            Labeled::Conflict
        }),
    }
}

/// Removes this cluster's labels. A host labeled for anyone else is left alone.
/// Returns false on a conflict (try again later).
pub async fn unlabel(
    api: &Api<BareMetalHost>,
    name: &str,
    cluster: &ClusterKey,
    writer: Writer<'_>,
) -> kube::Result<bool> {
    let Some(host) = api.get_opt(name).await? else {
        return Ok(true);
    };
    let view = HostView::from_host(&host);
    let ours = [LABEL_CLUSTER_NAMESPACE, LABEL_CLUSTER_NAME, LABEL_NODE_TYPE];
    if view.labeled_for_other(cluster) || !ours.iter().any(|k| view.labels.contains_key(*k)) {
        return Ok(true);
    }
    let labels =
        json!({LABEL_CLUSTER_NAMESPACE: null, LABEL_CLUSTER_NAME: null, LABEL_NODE_TYPE: null});
    patch_labels(api, &host, labels, writer).await
}

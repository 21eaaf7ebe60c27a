//! Forgetting the clusters that left without a last turn. A SIPCluster deleted through its
//! finalizer is forgotten by that turn (`reconcile::cleanup`); one whose finalizer was removed
//! by hand, or whose deletion fell in a watch gap, gets no turn, and the memories keyed by its
//! name or uid would hold its entries for the life of the process. Each turn first drops the
//! entries of clusters the controller's cache no longer holds (a few hash lookups per cluster
//! remembered), and says how many each memory holds (`sip_controller_memory_entries`).

use std::cell::OnceCell;
use std::collections::HashSet;

use kube::runtime::reflector::{ObjectRef, Store};

use super::Context;
use crate::api::SIPCluster;

/// Drops what the memories hold of clusters gone from the controller's cache.
pub fn sweep(ctx: &Context) {
    let clusters = &ctx.clusters;
    let named =
        |(ns, name): &(String, String)| clusters.get(&ObjectRef::new(name).within(ns)).is_some();
    let by_ref = |r: &ObjectRef<SIPCluster>| clusters.get(r).is_some();
    // The uids only when a held cluster asks (the backoff is empty while all goes well).
    let uids = OnceCell::new();
    let by_uid = |uid: &str| uids.get_or_init(|| uids_of(clusters)).contains(uid);
    let held = [
        ("verified", ctx.verified.retain(&named)),
        ("own_writes", ctx.own_writes.retain(&named)),
        ("touched", ctx.touched.retain(&named)),
        ("drift", ctx.drift.retain(&by_ref)),
        ("backoff", ctx.backoff.retain(&by_uid)),
    ];
    for (memory, entries) in held {
        ctx.metrics.memory_entries(memory, entries);
    }
}

fn uids_of(clusters: &Store<SIPCluster>) -> HashSet<String> {
    clusters
        .state()
        .iter()
        .filter_map(|c| c.metadata.uid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::api::LABEL_CLUSTER_NAME;
    use crate::controller::testing::{Objects, context};
    use crate::controller::verified::Check;

    fn cluster(name: &str, uid: &str) -> SIPCluster {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some(uid.into());
        c.metadata.resource_version = Some("1".into());
        c
    }

    /// A deletion of a child of `name` the operator did not make: drift for that cluster.
    fn deleted_child_of(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("{name}-lb")),
            namespace: Some("ns".into()),
            labels: Some([(LABEL_CLUSTER_NAME.to_string(), name.to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                kind: "SIPCluster".into(),
                name: name.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    fn entries(ctx: &Context) -> Vec<(String, i64)> {
        ctx.metrics.memories_held().into_iter().collect()
    }

    /// Entries of a cluster the cache no longer holds (its finalizer removed by hand) go at
    /// the next turn, in every memory; a cluster still there keeps its own.
    #[tokio::test]
    async fn a_cluster_gone_from_the_cache_is_forgotten_by_every_memory() {
        let mut ctx = context(Arc::new(Objects::default()), Vec::new());
        let (kept, gone) = (cluster("kept", "u-kept"), cluster("gone", "u-gone"));
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(kept.clone()));
        ctx.clusters = store;
        let full = Check {
            full: true,
            touched: 0,
        };
        for c in [&kept, &gone] {
            ctx.verified
                .remember(c, Some("1".into()), full, Instant::now());
            ctx.own_writes.wrote(c, "1");
            ctx.touched.bump(&ObjectRef::from_obj(c));
            ctx.backoff.hold(c, 0);
            let name = c.metadata.name.as_deref().unwrap();
            assert!(
                ctx.drift
                    .observe("Service", &deleted_child_of(name), true)
                    .is_some()
            );
        }
        sweep(&ctx);
        let one = |m: &str| (m.to_string(), 1);
        let memories = ["backoff", "drift", "own_writes", "touched", "verified"];
        assert_eq!(entries(&ctx), memories.map(one).to_vec());
        assert!(ctx.own_writes.is_last(&kept));
        assert!(!ctx.own_writes.is_last(&gone));
        assert_eq!(ctx.touched.of(&kept), 1);
        assert_eq!(ctx.touched.of(&gone), 0);
        assert!(ctx.backoff.held(&kept, 0).is_some());
        assert!(ctx.backoff.held(&gone, 0).is_none());
        assert_eq!(ctx.drift.take(&ObjectRef::from_obj(&kept)).len(), 1);
        assert!(ctx.drift.take(&ObjectRef::from_obj(&gone)).is_empty());
        assert!(ctx.verified.unchanged(&kept, 0, Instant::now()));
        assert!(!ctx.verified.unchanged(&gone, 0, Instant::now()));
        // The kept one's departure empties them all.
        writer.apply_watcher_event(&watcher::Event::Delete(kept));
        sweep(&ctx);
        assert_eq!(entries(&ctx), memories.map(|m| (m.to_string(), 0)).to_vec());
    }
}

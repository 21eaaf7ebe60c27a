//! The load balancers' template ConfigMaps, watched by name. Every cluster with a load balancer
//! renders from them, so reading both at each DeployingInfra and at each full Ready check cost
//! two GETs a turn; a watch of the two names (one each: a field selector matches one name)
//! serves those reads from memory, and its events wake the clusters that render from them, so
//! a template edit takes effect at once instead of at the next full check.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::watches::{Wakers, report};
use crate::api::SIPCluster;
use crate::services::{TEMPLATE_CONFIG_MAPS, uses_templates};

/// The cached template ConfigMaps, one store per name.
#[derive(Clone)]
pub struct Templates {
    stores: [Store<ConfigMap>; 2],
}

impl Templates {
    /// The ConfigMap `namespace/name` as the watch has it, or `None` when `name` is not a
    /// template's (the caller reads it from the API server).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Option<Arc<ConfigMap>>> {
        let i = TEMPLATE_CONFIG_MAPS.iter().position(|t| *t == name)?;
        Some(self.stores[i].get(&ObjectRef::new(name).within(namespace)))
    }

    /// Waits until both watches have listed what exists; false when a watch is gone.
    pub async fn wait_until_ready(&self) -> bool {
        let [a, b] = &self.stores;
        a.wait_until_ready().await.is_ok() && b.wait_until_ready().await.is_ok()
    }

    /// Stores that never fill, for the phases' unit tests (which serve every read themselves).
    #[cfg(test)]
    pub fn none() -> Self {
        Templates {
            stores: [reflector::store().0, reflector::store().0],
        }
    }
}

/// Starts the two watches (in `namespace`, or everywhere). Each event counts for and wakes
/// the clusters of its namespace that have a load balancer (a held one is let through, a
/// Ready one's check reads everything again).
pub(super) fn watch(
    client: &kube::Client,
    namespace: Option<&str>,
    wakers: &Wakers,
) -> (Templates, Vec<impl Future<Output = ()> + Send + 'static>) {
    let mut tasks = Vec::new();
    let stores = TEMPLATE_CONFIG_MAPS.map(|name| {
        let api: Api<ConfigMap> = super::scoped(client, namespace);
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let wakers = wakers.clone();
        tasks.push(
            reflector(
                writer,
                watcher(api, config)
                    .modify(|cm| cm.metadata.managed_fields = None)
                    .default_backoff(),
            )
            .touched_objects()
            .for_each(move |event| {
                match event {
                    Ok(cm) => {
                        wakers.metrics.watches.recovered("configmaps");
                        let namespace = cm.metadata.namespace.as_deref().unwrap_or_default();
                        wakers.wake(rendering_from(&wakers.clusters.state(), namespace));
                    }
                    Err(e) => report(&wakers.metrics, "configmaps", "configmaps", &e),
                }
                std::future::ready(())
            }),
        );
        store
    });
    (Templates { stores }, tasks)
}

/// The clusters in `namespace` that render from its template ConfigMaps: those with a load
/// balancer.
fn rendering_from(clusters: &[Arc<SIPCluster>], namespace: &str) -> Vec<ObjectRef<SIPCluster>> {
    clusters
        .iter()
        .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
        .filter(|c| uses_templates(&c.spec))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SIPClusterSpec;

    #[test]
    fn a_template_wakes_the_clusters_of_its_namespace_that_have_a_load_balancer() {
        let spec = SIPClusterSpec {
            services: crate::extraction::tests::services("oam-ipv4", "oam-ipv4"),
            ..Default::default()
        };
        let mut with = SIPCluster::new("with", spec);
        with.metadata.namespace = Some("tenants".into());
        assert!(!with.spec.services.load_balancer_control_plane.is_empty());
        let mut without = with.clone();
        without.metadata.name = Some("without".into());
        without.spec.services.load_balancer_control_plane.clear();
        without.spec.services.load_balancer_worker.clear();
        let mut elsewhere = with.clone();
        elsewhere.metadata.namespace = Some("others".into());
        let clusters: Vec<_> = [with, without, elsewhere]
            .into_iter()
            .map(Arc::new)
            .collect();
        let woken: Vec<String> = rendering_from(&clusters, "tenants")
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        assert_eq!(woken, ["tenants/with"]);
    }

    #[test]
    fn only_the_template_names_are_served_from_the_watch() {
        let templates = Templates::none();
        assert!(templates.get("tenants", "some-other-config").is_none());
        for name in TEMPLATE_CONFIG_MAPS {
            assert_eq!(templates.get("tenants", name), Some(None), "{name}");
        }
    }
}

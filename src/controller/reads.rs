//! What the phases read from the API server to decide (the hosts' Secrets, the services'
//! sources, what holds the names of the services' objects, the other clusters' ledgers),
//! behind one small interface: in the operator it is the client, with the template ConfigMaps
//! served from their watch (`Served`); the phases' unit tests hand in the objects they need,
//! see what was read, and run without a server. The phases' writes, and the predecessor
//! check's reads of its objects (which decide only what to delete), go through the client:
//! what they do on a real API server is what the integration tests are for.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use super::templates::Templates;
use crate::api::SIPCluster;

pub trait Reads: Send + Sync {
    /// A Secret, whole (`None`: there is none of that name).
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>>;
    /// A ConfigMap, whole (`None`: there is none of that name).
    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ConfigMap>>>;
    /// The metadata of an object of any kind (`None`: there is none of that name): a source's
    /// version, what holds the name of a service's object before the operator first writes it.
    fn object_metadata<'a>(
        &'a self,
        resource: &'a ApiResource,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ObjectMeta>>>;
    /// Every SIPCluster, as the API server has them now (not as a cache may lag).
    fn clusters(&self) -> BoxFuture<'_, kube::Result<Vec<SIPCluster>>>;
}

impl Reads for kube::Client {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        async move {
            Api::<Secret>::namespaced(self.clone(), namespace)
                .get_opt(name)
                .await
        }
        .boxed()
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ConfigMap>>> {
        async move {
            Api::<ConfigMap>::namespaced(self.clone(), namespace)
                .get_opt(name)
                .await
        }
        .boxed()
    }

    fn object_metadata<'a>(
        &'a self,
        resource: &'a ApiResource,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ObjectMeta>>> {
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(self.clone(), namespace, resource);
            Ok(api.get_metadata_opt(name).await?.map(|m| m.metadata))
        }
        .boxed()
    }

    fn clusters(&self) -> BoxFuture<'_, kube::Result<Vec<SIPCluster>>> {
        async move {
            let all: Api<SIPCluster> = Api::all(self.clone());
            Ok(all.list(&ListParams::default()).await?.items)
        }
        .boxed()
    }
}

/// The operator's reads: the client's, but for the template ConfigMaps, which their watch
/// holds (as fresh as a read, give or take the watch's delay; a change then wakes the clusters
/// that render from them).
pub struct Served {
    pub client: kube::Client,
    pub templates: Templates,
}

impl Reads for Served {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        self.client.secret(namespace, name)
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ConfigMap>>> {
        match self.templates.get(namespace, name) {
            Some(cached) => futures::future::ready(Ok(cached.map(|c| (*c).clone()))).boxed(),
            None => self.client.config_map(namespace, name),
        }
    }

    fn object_metadata<'a>(
        &'a self,
        resource: &'a ApiResource,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ObjectMeta>>> {
        match self.templates.get(namespace, name) {
            Some(cached) if resource.kind == "ConfigMap" => {
                futures::future::ready(Ok(cached.map(|c| c.metadata.clone()))).boxed()
            }
            _ => self.client.object_metadata(resource, namespace, name),
        }
    }

    fn clusters(&self) -> BoxFuture<'_, kube::Result<Vec<SIPCluster>>> {
        self.client.clusters()
    }
}

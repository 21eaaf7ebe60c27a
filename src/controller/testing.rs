//! For the controller's unit tests: a [`Context`] with no API server behind it. Its reads come
//! from objects the test hands in (and are counted); any request that reaches its client fails,
//! so a phase that writes where a test says it reads nothing fails that test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};

use super::reads::Reads;
use super::sources::SourceKind;
use super::{Context, MANAGER, verified, views};
use crate::api::{BareMetalHost, SIPCluster};

/// The objects a test's API server would hold, and a log of what the phases read.
#[derive(Default)]
pub struct Objects {
    pub secrets: HashMap<(String, String), Secret>,
    pub config_maps: HashMap<(String, String), ConfigMap>,
    pub clusters: Vec<SIPCluster>,
    read: Mutex<Vec<String>>,
}

impl Objects {
    pub fn with_secret(mut self, namespace: &str, name: &str, secret: Secret) -> Self {
        self.secrets
            .insert((namespace.to_string(), name.to_string()), secret);
        self
    }

    pub fn with_clusters(mut self, clusters: Vec<SIPCluster>) -> Self {
        self.clusters = clusters;
        self
    }

    /// What was read, in order: `"Secret ns/name"`, `"clusters"`, ...
    pub fn read(&self) -> Vec<String> {
        self.read.lock().unwrap().clone()
    }

    fn note(&self, what: String) {
        self.read.lock().unwrap().push(what);
    }
}

impl Reads for Objects {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        self.note(format!("Secret {namespace}/{name}"));
        let found = self.secrets.get(&(namespace.into(), name.into())).cloned();
        futures::future::ready(Ok(found)).boxed()
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ConfigMap>>> {
        self.note(format!("ConfigMap {namespace}/{name}"));
        let found = self
            .config_maps
            .get(&(namespace.into(), name.into()))
            .cloned();
        futures::future::ready(Ok(found)).boxed()
    }

    fn metadata<'a>(
        &'a self,
        kind: SourceKind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ObjectMeta>>> {
        self.note(format!("{kind:?} metadata {namespace}/{name}"));
        let key = (namespace.to_string(), name.to_string());
        let found = match kind {
            SourceKind::Secret => self.secrets.get(&key).map(|s| s.metadata.clone()),
            SourceKind::ConfigMap => self.config_maps.get(&key).map(|c| c.metadata.clone()),
        };
        futures::future::ready(Ok(found)).boxed()
    }

    fn clusters(&self) -> BoxFuture<'_, kube::Result<Vec<SIPCluster>>> {
        self.note("clusters".into());
        futures::future::ready(Ok(self.clusters.clone())).boxed()
    }
}

/// A client whose every request fails: there is no server.
fn no_server() -> kube::Client {
    let refuse = tower::service_fn(|_: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, _>(std::io::Error::other(
            "a unit test has no API server",
        ))
    });
    kube::Client::new(refuse, "default")
}

/// A context whose host cache holds `hosts` and whose reads are `objects`.
pub fn context(objects: Arc<Objects>, hosts: Vec<BareMetalHost>) -> Context {
    let (host_store, mut writer) = reflector::store();
    for host in hosts {
        writer.apply_watcher_event(&watcher::Event::Apply(host));
    }
    let (clusters, _) = reflector::store();
    let client = no_server();
    Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: None,
            },
        ),
        reads: objects,
        client,
        manager: MANAGER.into(),
        hosts: host_store,
        clusters,
        metrics: Default::default(),
        backoff: Default::default(),
        host_epoch: Default::default(),
        drift: Default::default(),
        views: Mutex::new(views::HostViews::default()),
        verified: verified::Verified::default(),
        network_data_any_namespace: false,
    }
}

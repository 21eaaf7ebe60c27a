//! For the controller's unit tests: a [`Context`] with no API server behind it. Its reads come
//! from objects the test hands in (and are counted); any request that reaches its client fails,
//! so a phase that writes where a test says it reads nothing fails that test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};

use super::reads::Reads;
use super::{Context, MANAGER, verified};
use crate::api::{BareMetalHost, SIPCluster};

/// The objects a test's API server would hold, and a log of what the phases read.
#[derive(Default)]
pub struct Objects {
    pub secrets: HashMap<(String, String), Secret>,
    pub config_maps: HashMap<(String, String), ConfigMap>,
    pub clusters: Vec<SIPCluster>,
    /// The SIPClusters the ledgers' watch has brought (the server's are `clusters`).
    pub cached_clusters: Vec<SIPCluster>,
    read: Mutex<Vec<String>>,
}

impl Objects {
    pub fn with_secret(mut self, namespace: &str, name: &str, secret: Secret) -> Self {
        self.secrets.insert(key(namespace, name), secret);
        self
    }

    pub fn with_clusters(mut self, clusters: Vec<SIPCluster>) -> Self {
        self.clusters = clusters;
        self
    }

    pub fn with_cached_clusters(mut self, clusters: Vec<SIPCluster>) -> Self {
        self.cached_clusters = clusters;
        self
    }

    /// What was read, in order: `"Secret ns/name"`, `"clusters"`, ...
    pub fn read(&self) -> Vec<String> {
        self.read.lock().unwrap().clone()
    }

    /// Logs the read of `what` and answers it from `held`.
    fn answer<'a, T: Clone + Send + 'a>(
        &self,
        what: String,
        held: Option<&T>,
    ) -> BoxFuture<'a, kube::Result<Option<T>>> {
        self.read.lock().unwrap().push(what);
        futures::future::ready(Ok(held.cloned())).boxed()
    }
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

impl Reads for Objects {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        let held = self.secrets.get(&key(namespace, name));
        self.answer(format!("Secret {namespace}/{name}"), held)
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ConfigMap>>> {
        let held = self.config_maps.get(&key(namespace, name));
        self.answer(format!("ConfigMap {namespace}/{name}"), held)
    }

    fn object_metadata<'a>(
        &'a self,
        resource: &'a ApiResource,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<ObjectMeta>>> {
        let key = key(namespace, name);
        let held = match resource.kind.as_str() {
            "Secret" => self.secrets.get(&key).map(|s| &s.metadata),
            "ConfigMap" => self.config_maps.get(&key).map(|c| &c.metadata),
            _ => None,
        };
        self.answer(
            format!("{} metadata {namespace}/{name}", resource.kind),
            held,
        )
    }

    fn clusters(&self) -> BoxFuture<'_, kube::Result<Vec<SIPCluster>>> {
        self.read.lock().unwrap().push("clusters".into());
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
    let (every_ledger, mut ledger_writer) = reflector::store();
    for cluster in &objects.cached_clusters {
        ledger_writer.apply_watcher_event(&watcher::Event::Apply(cluster.clone()));
    }
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
        hosts: host_store,
        clusters: reflector::store().0,
        ledgers: Arc::new(super::ledgers::Ledgers::new(every_ledger)),
        predecessors: reflector::store().0,
        deployments: reflector::store().0,
        metrics: Default::default(),
        backoff: Default::default(),
        touched: Default::default(),
        drift: Default::default(),
        verified: verified::Verified::default(),
        own_writes: Default::default(),
        network_data_any_namespace: false,
        renderer: Default::default(),
        cancel: None,
        pause: None,
        turn_limit: crate::controller::TURN_LIMIT,
        claim_scope: Default::default(),
    }
}

/// The SIPCluster `ns/tenant` at resourceVersion `version`, for the memories' unit tests.
pub fn tenant_at(version: &str) -> SIPCluster {
    let mut c = SIPCluster::new("tenant", Default::default());
    c.metadata.namespace = Some("ns".into());
    c.metadata.resource_version = Some(version.into());
    c
}

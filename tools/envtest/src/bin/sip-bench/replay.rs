//! The critical path of one cluster, replayed by the bench's own client: the requests the
//! operator cannot overlap, in its order, each round's requests at once, on copies of what the
//! operator read and wrote for a warm cluster. What that takes is what the API server makes any
//! client wait for this cluster; what the operator takes beyond it is its own (its watch's
//! delay, its decisions, its rendering). Runs with the operator stopped, so nothing reacts.

use std::time::Instant;

use anyhow::{Context, Result};
use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sip::api::{BareMetalHost, SIPCluster};
use sip::extraction::{credentials_secret_ref, network_data_secret_ref};
use sip::services::meta::children_selector;
use sip::services::referenced_secrets;

/// The rounds of one cluster's path, as the operator makes them.
/// (The ledgers and the predecessor's Deployments are read from the operator's watches.)
pub const ROUNDS: &str = "create; the finalizer with the members' and the services' Secrets \
    and what holds the services' names; status; the services' objects (one wave: their names held \
    nothing); labels; status";

/// What one replay reads and writes, taken from a Ready cluster.
pub struct Path {
    ns: String,
    cluster: SIPCluster,
    /// `(namespace, name)` of the members.
    hosts: Vec<(String, String)>,
    /// `(namespace, name)` of the members' networkData and BMC Secrets.
    host_secrets: Vec<(String, String)>,
    service_secrets: Vec<String>,
    /// The services' objects, as applied (JSON, with their kinds).
    objects: Vec<(ApiResource, Value)>,
}

impl Path {
    /// The path of `name`, a Ready cluster in `ns`.
    pub async fn of(client: &kube::Client, ns: &str, name: &str) -> Result<Self> {
        let clusters: Api<SIPCluster> = Api::namespaced(client.clone(), ns);
        let cluster = clusters.get(name).await?;
        let ledger = cluster.status.clone().context("no status")?.hosts;
        let mut hosts = Vec::new();
        let mut host_secrets = Vec::new();
        for record in &ledger {
            let host = Api::<BareMetalHost>::namespaced(client.clone(), &record.namespace)
                .get(&record.name)
                .await?;
            hosts.push((record.namespace.clone(), record.name.clone()));
            host_secrets.extend(network_data_secret_ref(&host));
            host_secrets.extend(credentials_secret_ref(&host));
        }
        let selector = children_selector(name);
        let mut objects = Vec::new();
        objects.extend(children::<ServiceAccount>(client, ns, &selector).await?);
        objects.extend(children::<ConfigMap>(client, ns, &selector).await?);
        objects.extend(children::<Secret>(client, ns, &selector).await?);
        let configuration = objects.len();
        objects.extend(children::<Deployment>(client, ns, &selector).await?);
        objects.extend(children::<Service>(client, ns, &selector).await?);
        anyhow::ensure!(
            configuration > 0 && objects.len() > configuration,
            "{name} has no service objects to replay"
        );
        Ok(Path {
            ns: ns.to_string(),
            service_secrets: referenced_secrets(&cluster.spec).into_iter().collect(),
            cluster,
            hosts,
            host_secrets,
            objects,
        })
    }

    /// Requests the path makes, for the printout.
    pub fn requests(&self) -> usize {
        1 + 1
            + self.host_secrets.len()
            + 1
            + self.service_secrets.len()
            + 2 * self.objects.len()
            + self.hosts.len()
            + 1
    }

    /// Replays the path once as cluster `run`; returns its seconds. Leaves nothing behind.
    pub async fn replay(&self, client: &kube::Client, run: usize) -> Result<f64> {
        let ns = &self.ns;
        let clusters: Api<SIPCluster> = Api::namespaced(client.clone(), ns);
        let name = format!("replay-{run}");
        let mut copy = SIPCluster::new(&name, self.cluster.spec.clone());
        copy.metadata.namespace = Some(ns.clone());
        // The hosts' versions as the operator's cache would hold them.
        let mut versions = Vec::new();
        for (host_ns, host) in &self.hosts {
            let h = Api::<BareMetalHost>::namespaced(client.clone(), host_ns)
                .get(host)
                .await?;
            versions.push(h.resource_version().unwrap_or_default());
        }
        let status = serde_json::to_value(&self.cluster.status)?;

        let t0 = Instant::now();
        let created = clusters.create(&PostParams::default(), &copy).await?;
        let finalizer = json!({"metadata": {
            "resourceVersion": created.resource_version(),
            "finalizers": [sip::api::FINALIZER],
        }});
        // The finalizer, and meanwhile every Secret the first phases read (the members' and
        // those the services render from) and what holds the names of the services' objects.
        let secrets = self
            .host_secrets
            .iter()
            .map(|(secret_ns, secret)| (secret_ns, secret))
            .chain(self.service_secrets.iter().map(|secret| (ns, secret)))
            .map(|(secret_ns, secret)| {
                let api: Api<Secret> = Api::namespaced(client.clone(), secret_ns);
                async move { api.get_opt(secret).await }
            });
        let names = self.objects.iter().map(|(resource, object)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
            let name = replayed_name(object, run);
            async move { api.get_metadata_opt(&name).await }
        });
        let (params, finalizer) = (PatchParams::default(), Patch::Merge(&finalizer));
        let (added, _, _) = futures::try_join!(
            clusters.patch(&name, &params, &finalizer),
            try_join_all(secrets),
            try_join_all(names),
        )?;
        let written = write_status(&clusters, &name, added.resource_version(), &status).await?;
        // A first creation: the operator applies every object at once (`apply.rs`, `waves`).
        try_join_all(
            self.objects
                .iter()
                .map(|(resource, object)| apply(client, ns, resource, object, run)),
        )
        .await?;
        try_join_all(
            self.hosts
                .iter()
                .zip(&versions)
                .map(|((host_ns, host), rv)| {
                    let api: Api<BareMetalHost> = Api::namespaced(client.clone(), host_ns);
                    let labels = json!({"metadata": {
                        "resourceVersion": rv,
                        "labels": {"sip-bench/replay": run.to_string()},
                    }});
                    async move {
                        api.patch(host, &PatchParams::default(), &Patch::Merge(&labels))
                            .await
                    }
                }),
        )
        .await?;
        write_status(&clusters, &name, written, &status).await?;
        let took = t0.elapsed().as_secs_f64();

        self.clean_up(client, &name, run).await?;
        Ok(took)
    }

    async fn clean_up(&self, client: &kube::Client, name: &str, run: usize) -> Result<()> {
        let ns = &self.ns;
        for (resource, object) in &self.objects {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
            api.delete(&replayed_name(object, run), &DeleteParams::default())
                .await?;
        }
        let clusters: Api<SIPCluster> = Api::namespaced(client.clone(), ns);
        clusters
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await?;
        clusters.delete(name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// A status write as the operator makes it: the whole status, guarded by the version.
async fn write_status(
    clusters: &Api<SIPCluster>,
    name: &str,
    version: Option<String>,
    status: &Value,
) -> Result<Option<String>> {
    let patch = json!({"metadata": {"resourceVersion": version}, "status": status});
    let written = clusters
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(written.resource_version())
}

/// The objects of kind `K` labelled for the cluster, as JSON ready to apply again.
async fn children<K>(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<Vec<(ApiResource, Value)>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let resource = ApiResource::erase::<K>(&());
    let mut out = Vec::new();
    for object in api.list(&ListParams::default().labels(selector)).await? {
        let mut value = serde_json::to_value(&object)?;
        value["apiVersion"] = json!(resource.api_version);
        value["kind"] = json!(resource.kind);
        out.push((resource.clone(), as_applied(value)));
    }
    Ok(out)
}

/// What the operator applied of an object: what it says, without what the server added (its
/// identity, versions, status, allocated addresses and node ports).
fn as_applied(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for server_set in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(server_set);
        }
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if object["kind"] == "Service" {
        if let Some(spec) = object["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if let Some(ports) = object["spec"]["ports"].as_array_mut() {
            for port in ports {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
            }
        }
    }
    object
}

fn replayed_name(object: &Value, run: usize) -> String {
    format!(
        "r{run}-{}",
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

async fn apply(
    client: &kube::Client,
    ns: &str,
    resource: &ApiResource,
    object: &Value,
    run: usize,
) -> Result<()> {
    let name = replayed_name(object, run);
    let mut object = object.clone();
    object["metadata"]["name"] = json!(name);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let params = PatchParams::apply(sip::controller::MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .with_context(|| format!("applying {} {name}", resource.kind))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_applied_without_what_the_server_allocated() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "lb", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                "ports": [{"port": 6443, "nodePort": 30001}]},
            "status": {"loadBalancer": {}},
        });
        let applied = as_applied(service);
        assert_eq!(
            applied,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "lb", "labels": {"a": "b"}},
                "spec": {"type": "NodePort", "ports": [{"port": 6443}]},
            })
        );
        assert_eq!(replayed_name(&applied, 3), "r3-lb");
    }
}

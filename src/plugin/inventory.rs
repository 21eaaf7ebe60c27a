//! What the plugin reads, once per command: the hosts and every SIPCluster (their ledgers
//! are the claims). Lists only: the plugin needs `get` and `list`, never a write.

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::api::{BareMetalHost, SIPCluster};
use crate::scheduling::HostView;

pub struct Inventory {
    pub hosts: Vec<BareMetalHost>,
    pub clusters: Vec<SIPCluster>,
}

impl Inventory {
    /// The hosts in `host_namespace` (`None`: every namespace, as the shipped operator sees
    /// them) matching `selector`, and every SIPCluster.
    pub async fn read(
        client: &Client,
        host_namespace: Option<&str>,
        selector: Option<&str>,
    ) -> kube::Result<Self> {
        let hosts: Api<BareMetalHost> = match host_namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let mut params = ListParams::default();
        if let Some(s) = selector {
            params = params.labels(s);
        }
        let clusters = Api::<SIPCluster>::all(client.clone());
        let every = ListParams::default();
        let (hosts, clusters) = futures::try_join!(hosts.list(&params), clusters.list(&every))?;
        Ok(Inventory {
            hosts: hosts.items,
            clusters: clusters.items,
        })
    }

    /// The scheduler's view of each host.
    pub fn views(&self) -> Vec<HostView> {
        self.hosts.iter().map(HostView::from_host).collect()
    }

    /// The SIPCluster `namespace/name`, as read.
    pub fn cluster(&self, namespace: &str, name: &str) -> Option<&SIPCluster> {
        self.clusters
            .iter()
            .find(|c| c.name_any() == name && c.namespace().as_deref() == Some(namespace))
    }
}

//! How many watch events concerned each cluster's inputs: the host events the relevance
//! filter lets through and the template events, counted for the clusters they wake. The Ready
//! check's memory is let go when its cluster's count moves; the global count it used before
//! made every Ready cluster read everything again whenever any host anywhere changed, as every
//! new cluster's label patches do in a burst.

use kube::runtime::reflector::ObjectRef;

use super::per_cluster::{PerCluster, key};
use crate::api::SIPCluster;

pub type Touched = PerCluster<u64>;

impl Touched {
    /// Counts an event that concerns `cluster`.
    pub fn bump(&self, cluster: &ObjectRef<SIPCluster>) {
        let key = (
            cluster.namespace.clone().unwrap_or_default(),
            cluster.name.clone(),
        );
        *self.map().entry(key).or_default() += 1;
    }

    /// The events that concerned `cluster` so far.
    pub fn of(&self, cluster: &SIPCluster) -> u64 {
        self.map().get(&key(cluster)).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> SIPCluster {
        let mut c = SIPCluster::new(name, Default::default());
        c.metadata.namespace = Some("sip".into());
        c
    }

    #[test]
    fn each_cluster_counts_only_the_events_that_concern_it() {
        let touched = Touched::default();
        let (a, b) = (cluster("a"), cluster("b"));
        touched.bump(&ObjectRef::from_obj(&a));
        touched.bump(&ObjectRef::from_obj(&a));
        assert_eq!((touched.of(&a), touched.of(&b)), (2, 0));
        touched.forget(&a);
        assert_eq!(touched.of(&a), 0);
    }
}

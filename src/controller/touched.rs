//! How many watch events concerned each cluster's inputs: the host events the relevance
//! filter lets through and the template events, counted for the clusters they wake. The Ready
//! check's memory is let go when its cluster's count moves; the global count it used before
//! made every Ready cluster read everything again whenever any host anywhere changed, as every
//! new cluster's label patches do in a burst.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use super::own_writes::key;
use crate::api::SIPCluster;

#[derive(Default)]
pub struct Touched(Mutex<HashMap<(String, String), u64>>);

impl Touched {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        crate::sync::lock(&self.0)
    }

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

    /// A deleted cluster leaves nothing behind.
    pub fn forget(&self, cluster: &SIPCluster) {
        self.map().remove(&key(cluster));
    }

    /// Keeps the clusters `alive` says exist; how many it holds then.
    pub fn retain(&self, alive: &dyn Fn(&(String, String)) -> bool) -> usize {
        let mut map = self.map();
        map.retain(|k, _| alive(k));
        map.len()
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

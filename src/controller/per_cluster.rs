//! The shape of the memories the controller keeps per SIPCluster (`own_writes`, `verified`,
//! `touched`): a map keyed by the cluster's `(namespace, name)` behind a lock, freed by
//! `forget` when its deletion turn runs and by `retain` for a cluster gone without one
//! (`sweep.rs`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::api::SIPCluster;

/// A SIPCluster's `(namespace, name)`.
pub type Key = (String, String);

pub fn key(cluster: &SIPCluster) -> Key {
    (
        cluster.metadata.namespace.clone().unwrap_or_default(),
        cluster.metadata.name.clone().unwrap_or_default(),
    )
}

pub struct PerCluster<T>(Mutex<HashMap<Key, T>>);

impl<T> Default for PerCluster<T> {
    fn default() -> Self {
        PerCluster(Mutex::default())
    }
}

impl<T> PerCluster<T> {
    pub(super) fn map(&self) -> MutexGuard<'_, HashMap<Key, T>> {
        crate::sync::lock(&self.0)
    }

    /// A deleted cluster leaves nothing behind.
    pub fn forget(&self, cluster: &SIPCluster) {
        self.map().remove(&key(cluster));
    }

    /// Keeps the clusters `alive` says exist; how many it holds then.
    pub fn retain(&self, alive: &dyn Fn(&Key) -> bool) -> usize {
        let mut map = self.map();
        map.retain(|k, _| alive(k));
        map.len()
    }
}

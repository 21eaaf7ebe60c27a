//! The gauges that describe the current state (clusters per phase, hosts claimed, wanted,
//! free and available per role), recomputed from the caches at each scrape so they cannot
//! drift from what the operator sees.

use kube::core::{Selector, SelectorExt};

use super::Metrics;
use crate::api::{CONDITION_READY, NodeRole, Phase};
use crate::scheduling::{HostKey, free_by_itself};

impl Metrics {
    /// Recomputes the state gauges from the caches.
    pub(super) fn refresh(&self) {
        let Some((clusters, hosts)) = self.sources.get() else {
            return;
        };
        let clusters = clusters.state();
        self.cluster_phase.reset();
        for c in &clusters {
            let Some(status) = &c.status else { continue };
            let phase = status.phase.unwrap_or_default();
            let entered = status
                .history
                .iter()
                .rev()
                .find(|h| h.to == phase)
                .map_or(0.0, |h| h.time.0.as_millisecond() as f64 / 1000.0);
            let reason = status
                .conditions
                .iter()
                .find(|c| c.type_ == CONDITION_READY)
                .map_or("", |c| c.reason.as_str());
            self.cluster_phase
                .with_label_values(&[
                    c.metadata.namespace.as_deref().unwrap_or_default(),
                    c.metadata.name.as_deref().unwrap_or_default(),
                    phase.as_str(),
                    reason,
                ])
                .set(entered);
        }
        for phase in Phase::ALL {
            let n = clusters
                .iter()
                .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(phase))
                .count();
            self.clusters
                .with_label_values(&[phase.as_str()])
                .set(n as i64);
        }
        let mut claimed_keys = std::collections::HashSet::new();
        for role in NodeRole::ALL {
            let claimed: usize = clusters
                .iter()
                .flat_map(|c| c.status.iter().flat_map(|s| s.hosts.iter()))
                .filter(|h| h.role == role && h.state.is_member())
                .inspect(|h| {
                    claimed_keys.insert(HostKey::of_record(h));
                })
                .count();
            let wanted: u32 = clusters
                .iter()
                .filter_map(|c| c.spec.nodes.get(&role))
                .map(|n| n.wanted())
                .sum();
            self.hosts_claimed
                .with_label_values(&[role.as_str()])
                .set(claimed as i64);
            self.hosts_wanted
                .with_label_values(&[role.as_str()])
                .set(i64::from(wanted));
        }
        let hosts = hosts.state();
        // Borrowed labels of the free hosts: a scrape copies nothing per host.
        let no_labels = std::collections::BTreeMap::new();
        let free: Vec<&std::collections::BTreeMap<String, String>> = hosts
            .iter()
            .filter(|h| free_by_itself(h))
            .filter(|h| {
                let meta = &h.metadata;
                let key = HostKey::new(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
                !claimed_keys.contains(&key)
            })
            .map(|h| h.metadata.labels.as_ref().unwrap_or(&no_labels))
            .collect();
        self.hosts_free.set(free.len() as i64);
        self.hosts_total.set(hosts.len() as i64);
        // Per cluster and role: free hosts its selector matches (topology not considered).
        self.hosts_available.reset();
        for c in &clusters {
            for (role, set) in &c.spec.nodes {
                let Ok(selector) = Selector::try_from(set.label_selector.clone()) else {
                    continue;
                };
                let n = free
                    .iter()
                    .filter(|labels| selector.matches(labels))
                    .count();
                self.hosts_available
                    .with_label_values(&[
                        c.metadata.namespace.as_deref().unwrap_or_default(),
                        c.metadata.name.as_deref().unwrap_or_default(),
                        role.as_str(),
                    ])
                    .set(n as i64);
            }
        }
    }
}

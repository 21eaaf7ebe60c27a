//! The sizes of the controller's in-process memories (`controller::sweep` sets them at each
//! turn): `sip_controller_memory_entries{memory}`.

use std::collections::BTreeMap;

use prometheus::core::Collector;

use super::Metrics;

impl Metrics {
    /// How many clusters an in-process memory of the controller holds (`controller::sweep`).
    pub fn memory_entries(&self, memory: &str, entries: usize) {
        self.memory_entries
            .with_label_values(&[memory])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// What [`Self::memory_entries`] last said of each memory, by name.
    pub fn memories_held(&self) -> BTreeMap<String, i64> {
        self.memory_entries
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter_map(|m| {
                let memory = m.get_label().first()?.value().to_string();
                Some((memory, m.get_gauge().get_value() as i64))
            })
            .collect()
    }
}

//! `spec.nodes`: hosts wanted per role. Admission accepts only the keys `ControlPlane` and
//! `Worker`, but a SIPCluster stored under the predecessor's looser schema may have others
//! (`master`, `worker`): reading one must not fail, or the list and watch of every SIPCluster
//! would fail with it. Unknown keys are kept aside by name, for the condition that tells the
//! user to fix them ([`super::legacy`]).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sipcluster::{NodeRole, NodeSet};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSets {
    roles: BTreeMap<NodeRole, NodeSet>,
    /// Keys that name no role, as stored (never written back: the operator writes only status).
    pub unknown: Vec<String>,
}

impl NodeSets {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.unknown.is_empty()
    }
}

impl Deref for NodeSets {
    type Target = BTreeMap<NodeRole, NodeSet>;
    fn deref(&self) -> &Self::Target {
        &self.roles
    }
}

impl DerefMut for NodeSets {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.roles
    }
}

impl<'a> IntoIterator for &'a NodeSets {
    type Item = (&'a NodeRole, &'a NodeSet);
    type IntoIter = std::collections::btree_map::Iter<'a, NodeRole, NodeSet>;
    fn into_iter(self) -> Self::IntoIter {
        self.roles.iter()
    }
}

impl From<BTreeMap<NodeRole, NodeSet>> for NodeSets {
    fn from(roles: BTreeMap<NodeRole, NodeSet>) -> Self {
        NodeSets {
            roles,
            unknown: Vec::new(),
        }
    }
}

impl<const N: usize> From<[(NodeRole, NodeSet); N]> for NodeSets {
    fn from(roles: [(NodeRole, NodeSet); N]) -> Self {
        BTreeMap::from(roles).into()
    }
}

impl Serialize for NodeSets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.roles.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeSets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut sets = NodeSets::default();
        for (key, value) in raw {
            let role = match key.as_str() {
                "ControlPlane" => NodeRole::ControlPlane,
                "Worker" => NodeRole::Worker,
                _ => {
                    sets.unknown.push(key);
                    continue;
                }
            };
            let set = NodeSet::deserialize(value).map_err(serde::de::Error::custom)?;
            sets.roles.insert(role, set);
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_are_set_aside_and_never_written() {
        let sets: NodeSets = serde_json::from_value(serde_json::json!({
            "ControlPlane": {"count": {"active": 1}},
            "master": {"count": {"active": 3}},
        }))
        .unwrap();
        assert_eq!(sets.unknown, ["master"]);
        assert_eq!(sets[&NodeRole::ControlPlane].wanted(), 1);
        assert_eq!(
            serde_json::to_value(&sets).unwrap(),
            serde_json::json!({"ControlPlane": {"labelSelector": {}, "count": {"active": 1, "standby": 0}}})
        );
    }
}

//! The Secrets and ConfigMaps the services are rendered from (SSH keys, Dex's configuration, the
//! load balancers' templates, the members' BMC credentials), summed up by their versions.
//!
//! The operator may not watch Secrets, so a user rotating a key is noticed by the Ready check
//! (at the next event, at the latest after the resync): it compares the versions it reads now
//! with the sum recorded in the status when the services were rendered, and renders again when
//! they differ. Only versions are kept, never content, so the sum says nothing of the secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ApiResource;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Secret,
    ConfigMap,
}

impl SourceKind {
    pub fn resource(self) -> ApiResource {
        match self {
            SourceKind::Secret => ApiResource::erase::<Secret>(&()),
            SourceKind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
        }
    }
}

/// One object the services are rendered from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub namespace: String,
    pub name: String,
}

impl SourceRef {
    pub fn secret(namespace: &str, name: &str) -> Self {
        Self::new(SourceKind::Secret, namespace, name)
    }

    pub fn config_map(namespace: &str, name: &str) -> Self {
        Self::new(SourceKind::ConfigMap, namespace, name)
    }

    fn new(kind: SourceKind, namespace: &str, name: &str) -> Self {
        SourceRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// What was read, with its resourceVersion: `None` when it does not exist (its creation is a
/// change too).
#[derive(Debug, Default)]
pub struct Sources(BTreeMap<SourceRef, Option<String>>);

impl Sources {
    pub fn add(&mut self, source: &SourceRef, version: Option<String>) {
        self.0.insert(source.clone(), version);
    }

    /// A short, order-independent sum of the versions, for the status.
    pub fn sum(&self) -> String {
        let mut hash = Sha256::new();
        for (source, version) in &self.0 {
            let kind = match source.kind {
                SourceKind::Secret => "Secret",
                SourceKind::ConfigMap => "ConfigMap",
            };
            hash.update(format!("{kind}/{}/{}\0", source.namespace, source.name).as_bytes());
            match version {
                Some(v) => hash.update(v.as_bytes()),
                None => hash.update(b"\0absent"),
            }
            hash.update(b"\n");
        }
        hash.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(entries: &[(&str, Option<&str>)]) -> Sources {
        let mut i = Sources::default();
        for (name, version) in entries {
            i.add(&SourceRef::secret("ns", name), version.map(str::to_string));
        }
        i
    }

    #[test]
    fn the_sum_changes_with_any_version_and_only_then() {
        let base = sources(&[("keys", Some("10")), ("bmc-1", Some("11"))]);
        assert_eq!(base.sum().len(), 16);
        // Order of reading does not matter.
        assert_eq!(
            base.sum(),
            sources(&[("bmc-1", Some("11")), ("keys", Some("10"))]).sum()
        );
        for changed in [
            sources(&[("keys", Some("12")), ("bmc-1", Some("11"))]),
            sources(&[("keys", None), ("bmc-1", Some("11"))]),
            sources(&[("keys", Some("10"))]),
            sources(&[("keys", Some("10")), ("bmc-1", Some("11")), ("bmc-2", None)]),
        ] {
            assert_ne!(base.sum(), changed.sum(), "{changed:?}");
        }
        // The kind is part of the name: a ConfigMap and a Secret of one name differ.
        let mut cm = Sources::default();
        cm.add(&SourceRef::config_map("ns", "keys"), Some("10".into()));
        assert_ne!(cm.sum(), sources(&[("keys", Some("10"))]).sum());
    }
}

//! A host's labels as the scheduler sees them: shared with the cached host they were read
//! from, so the views of 10,000 hosts kept between turns copy no label, or owned where a view
//! is made by hand (tests, a one-off look at a host). Reads as a map; a write copies first.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::api::BareMetalHost;

type Map = BTreeMap<String, String>;

static NONE: Map = BTreeMap::new();

#[derive(Clone, Default)]
pub struct Labels {
    /// The cached host whose `metadata.labels` these are; `None` once owned.
    shared: Option<Arc<BareMetalHost>>,
    owned: Map,
}

impl Labels {
    /// The labels of `host`, without copying them.
    pub fn of(host: &Arc<BareMetalHost>) -> Self {
        Labels {
            shared: Some(host.clone()),
            owned: Map::new(),
        }
    }
}

impl From<Map> for Labels {
    fn from(owned: Map) -> Self {
        Labels {
            shared: None,
            owned,
        }
    }
}

impl Deref for Labels {
    type Target = Map;

    fn deref(&self) -> &Map {
        match &self.shared {
            Some(host) => host.metadata.labels.as_ref().unwrap_or(&NONE),
            None => &self.owned,
        }
    }
}

impl DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Map {
        if let Some(host) = self.shared.take() {
            self.owned = host.metadata.labels.clone().unwrap_or_default();
        }
        &mut self.owned
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(labels: &[(&str, &str)]) -> Arc<BareMetalHost> {
        let mut h = BareMetalHost::new("h", Default::default());
        h.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Arc::new(h)
    }

    #[test]
    fn shared_labels_read_the_hosts_own_and_a_write_leaves_the_host_alone() {
        let cached = host(&[("rack", "r1")]);
        let mut labels = Labels::of(&cached);
        assert!(
            std::ptr::eq(&*labels, cached.metadata.labels.as_ref().unwrap()),
            "reading copies nothing"
        );
        labels.insert("rack".into(), "r2".into());
        assert_eq!(labels["rack"], "r2");
        assert_eq!(cached.metadata.labels.as_ref().unwrap()["rack"], "r1");
    }

    #[test]
    fn a_host_without_labels_has_none_and_equality_is_by_content() {
        let mut bare = BareMetalHost::new("h", Default::default());
        bare.metadata.labels = None;
        let labels = Labels::of(&Arc::new(bare));
        assert!(labels.is_empty());
        assert_eq!(labels, Labels::from(Map::new()));
        assert_eq!(
            Labels::of(&host(&[("a", "1")])),
            Labels::from(Map::from([("a".to_string(), "1".to_string())]))
        );
    }

    #[test]
    fn labels_compare_and_print_as_the_map_they_hold() {
        let owned = |v: &str| Labels::from(Map::from([("a".to_string(), v.to_string())]));
        assert_ne!(owned("1"), owned("2"));
        assert_eq!(owned("1"), Labels::of(&host(&[("a", "1")])));
        assert_eq!(format!("{:?}", owned("1")), r#"{"a": "1"}"#);
    }
}

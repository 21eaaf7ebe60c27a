//! The health of the operator's watches: failures counted by resource
//! (`sip_watch_errors_total`), and the last failure of each watch not yet recovered, which
//! `/readyz` shows (a missing CRD or a missing right otherwise leaves it "syncing" with nothing
//! saying why).

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::{IntCounterVec, Opts, Registry};

/// The resources the operator watches, as they appear in the metric.
pub const WATCHED: [&str; 6] = [
    "sipclusters",
    "baremetalhosts",
    "deployments",
    "services",
    "configmaps",
    "serviceaccounts",
];

pub struct WatchHealth {
    errors: IntCounterVec,
    trouble: Mutex<BTreeMap<&'static str, String>>,
}

impl WatchHealth {
    pub(super) fn new(registry: &Registry) -> Self {
        let errors = IntCounterVec::new(
            Opts::new(
                "sip_watch_errors_total",
                "Failed lists and watches of the operator's caches, by resource",
            ),
            &["resource"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(errors.clone()))
            .expect("registered once");
        for resource in WATCHED {
            errors.with_label_values(&[resource]).reset();
        }
        WatchHealth {
            errors,
            trouble: Mutex::default(),
        }
    }

    /// A list or watch of `resource` failed, for the reason `why` (it is retried with backoff).
    pub fn failed(&self, resource: &'static str, why: String) {
        self.errors.with_label_values(&[resource]).inc();
        self.lock().insert(resource, why);
    }

    /// An event arrived for `resource`: its watch works.
    pub fn recovered(&self, resource: &'static str) {
        let mut trouble = self.lock();
        if !trouble.is_empty() {
            trouble.remove(resource);
        }
    }

    /// `resource: why` for each watch failing now, for `/readyz`.
    pub fn trouble(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(resource, why)| format!("{resource}: {why}"))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        crate::sync::lock(&self.trouble)
    }
}

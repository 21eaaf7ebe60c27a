//! The operator's Prometheus metrics, in a registry the controller and the admin server share
//! (no global registry). Phase metrics are recorded by the controller's transition bookkeeping
//! only after the status write that makes a transition true has succeeded. Gauges that describe
//! the current state (clusters per phase, hosts per role) are computed from the caches at
//! scrape time, so they can never drift from what the operator sees.

mod api;
mod memories;
mod state;
mod watches;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use api::ApiMetricsLayer;
pub use watches::{WATCHED, WatchHealth};

use crate::api::{BareMetalHost, Phase, SIPCluster};

/// The controller's name in the controller-runtime-compatible metrics.
pub const CONTROLLER: &str = "sipcluster";

/// Seconds a cluster may spend in one phase: from a blink to a long Unschedulable wait.
const PHASE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];
const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    transitions: IntCounterVec,
    phase_duration: HistogramVec,
    failures: IntCounterVec,
    clusters: IntGaugeVec,
    hosts_claimed: IntGaugeVec,
    hosts_wanted: IntGaugeVec,
    hosts_free: IntGauge,
    hosts_total: IntGauge,
    hosts_available: IntGaugeVec,
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    reconcile_errors: IntCounterVec,
    cr_reconciles: IntCounterVec,
    cr_reconcile_time: HistogramVec,
    cr_reconcile_errors: IntCounterVec,
    leader: IntGaugeVec,
    memory_entries: IntGaugeVec,
    cluster_phase: prometheus::GaugeVec,
    pub(crate) api_requests: IntCounterVec,
    pub(crate) api_latency: HistogramVec,
    pub(crate) rest_client_requests: IntCounterVec,
    sources: OnceLock<(Store<SIPCluster>, Store<BareMetalHost>)>,
    ready: AtomicBool,
    working: AtomicBool,
    /// Failures of the caches' lists and watches.
    pub watches: WatchHealth,
    /// Why the controller gave up, when it did (the process then exits non-zero).
    gave_up: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let watches = WatchHealth::new(&r);
        let plain_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let hosts_free = plain_gauge(
            "sip_hosts_free",
            "BareMetalHosts watched that no SIPCluster claims and that are not paused, errored or deleting",
        );
        let hosts_total = plain_gauge("sip_hosts", "BareMetalHosts watched");
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        Metrics {
            transitions: counter(
                &r,
                "sip_phase_transitions_total",
                "Phase transitions of SIPClusters, recorded once persisted",
                &["from", "to"],
            ),
            phase_duration: histogram(
                &r,
                "sip_phase_duration_seconds",
                "Time SIPClusters spent in a phase, recorded when they leave it",
                &["phase"],
                PHASE_BUCKETS,
            ),
            failures: counter(
                &r,
                "sip_phase_failures_total",
                "Turns that could not progress, by phase and reason",
                &["phase", "reason"],
            ),
            clusters: gauge(&r, "sip_clusters", "SIPClusters per phase", &["phase"]),
            hosts_claimed: gauge(
                &r,
                "sip_hosts_claimed",
                "Hosts in SIPCluster ledgers, summed over clusters",
                &["role"],
            ),
            hosts_wanted: gauge(
                &r,
                "sip_hosts_wanted",
                "Hosts SIPClusters ask for (active + standby), summed over clusters",
                &["role"],
            ),
            hosts_free,
            hosts_total,
            hosts_available: gauge(
                &r,
                "sip_cluster_hosts_available",
                "Free, usable hosts each SIPCluster's role selector matches (before topology)",
                &["sipcluster_namespace", "sipcluster", "role"],
            ),
            reconciles: counter(
                &r,
                "sip_reconciles_total",
                "Reconciles by result",
                &["result"],
            ),
            reconcile_duration: histogram(
                &r,
                "sip_reconcile_duration_seconds",
                "Duration of one reconcile",
                &["result"],
                RECONCILE_BUCKETS,
            ),
            reconcile_errors: counter(
                &r,
                "sip_reconcile_errors_total",
                "Reconciles that failed, by error",
                &["error"],
            ),
            cr_reconciles: counter(
                &r,
                "controller_runtime_reconcile_total",
                "Reconciles by result (controller-runtime compatible)",
                &["controller", "result"],
            ),
            cr_reconcile_time: histogram(
                &r,
                "controller_runtime_reconcile_time_seconds",
                "Reconcile duration (controller-runtime compatible)",
                &["controller"],
                RECONCILE_BUCKETS,
            ),
            cr_reconcile_errors: counter(
                &r,
                "controller_runtime_reconcile_errors_total",
                "Failed reconciles (controller-runtime compatible)",
                &["controller"],
            ),
            leader: gauge(
                &r,
                "leader_election_master_status",
                "1 when this replica is the one working",
                &["name"],
            ),
            memory_entries: gauge(
                &r,
                "sip_controller_memory_entries",
                "Clusters each in-process memory of the controller holds entries for",
                &["memory"],
            ),
            api_requests: counter(
                &r,
                "sip_api_requests_total",
                "Kubernetes API requests by verb, resource and status code",
                &["verb", "resource", "code"],
            ),
            api_latency: histogram(
                &r,
                "sip_api_request_duration_seconds",
                "Kubernetes API request latency (watches excluded)",
                &["verb", "resource"],
                RECONCILE_BUCKETS,
            ),
            rest_client_requests: counter(
                &r,
                "rest_client_requests_total",
                "Kubernetes API requests (client-go compatible)",
                &["code", "method", "host"],
            ),
            cluster_phase: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "sip_cluster_phase_entered_timestamp_seconds",
                        "One series per SIPCluster: when it entered its current phase (Unix seconds), with its Ready condition's reason",
                    ),
                    &["sipcluster_namespace", "sipcluster", "phase", "ready_reason"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            registry: r,
            sources: OnceLock::new(),
            ready: AtomicBool::new(false),
            working: AtomicBool::new(false),
            watches,
            gave_up: std::sync::Mutex::default(),
        }
        .with_zeroes()
    }

    /// Series that must exist before anything happens, so rates and alerts see a zero.
    fn with_zeroes(self) -> Self {
        for result in ["success", "error"] {
            self.cr_reconciles.with_label_values(&[CONTROLLER, result]);
            self.reconciles.with_label_values(&[result]);
        }
        self.cr_reconcile_errors.with_label_values(&[CONTROLLER]);
        // A phase's first transitions after a start would otherwise create their series with
        // the count already at 1, which rate() reads as no increase: the dashboard's time in
        // phase and transition rates stayed empty until the second cluster passed through.
        self.transitions
            .with_label_values(&["None", Phase::Gathering.as_str()]);
        for (from, _, to) in crate::machine::diagram::transitions() {
            self.transitions
                .with_label_values(&[from.as_str(), to.as_str()]);
            self.phase_duration.with_label_values(&[from.as_str()]);
        }
        self.set_leader(false);
        self
    }

    /// A persisted transition, with the time the cluster spent in `from` when known.
    pub fn transition(&self, from: Option<Phase>, to: Phase, time_in_from: Option<Duration>) {
        let from_label = from.map_or("None", Phase::as_str);
        self.transitions
            .with_label_values(&[from_label, to.as_str()])
            .inc();
        if let (Some(from), Some(d)) = (from, time_in_from) {
            self.phase_duration
                .with_label_values(&[from.as_str()])
                .observe(d.as_secs_f64());
        }
    }

    /// A turn that could not progress in `phase`, once its status was written.
    pub fn failure(&self, phase: Phase, reason: &str) {
        self.failures
            .with_label_values(&[phase.as_str(), reason])
            .inc();
    }

    /// One reconcile's outcome: `success`, `requeue` (blocked) or `error` (with its label).
    pub fn reconciled(&self, result: &str, error: Option<&str>, took: Duration) {
        let secs = took.as_secs_f64();
        self.reconciles.with_label_values(&[result]).inc();
        self.reconcile_duration
            .with_label_values(&[result])
            .observe(secs);
        self.cr_reconciles
            .with_label_values(&[CONTROLLER, result])
            .inc();
        self.cr_reconcile_time
            .with_label_values(&[CONTROLLER])
            .observe(secs);
        if let Some(error) = error {
            self.reconcile_errors.with_label_values(&[error]).inc();
            self.cr_reconcile_errors
                .with_label_values(&[CONTROLLER])
                .inc();
        }
    }

    /// Whether this replica works (always, until leader election decides otherwise).
    pub fn set_leader(&self, leader: bool) {
        self.leader
            .with_label_values(&["sip-operator"])
            .set(i64::from(leader));
    }

    pub fn is_leader(&self) -> bool {
        self.leader.with_label_values(&["sip-operator"]).get() == 1
    }

    /// The caches the state gauges are computed from; set once by the controller.
    pub fn watch(&self, clusters: Store<SIPCluster>, hosts: Store<BareMetalHost>) {
        let _ = self.sources.set((clusters, hosts));
    }

    /// Caches synced: the operator is ready to work.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The controller's caches are synced and it reconciles (a new leader lists every host
    /// first, which takes seconds with thousands of them).
    pub fn set_working(&self, working: bool) {
        self.working.store(working, Ordering::Release);
    }

    pub fn is_working(&self) -> bool {
        self.working.load(Ordering::Acquire)
    }

    /// The controller stops for good, for `reason`.
    pub fn give_up(&self, reason: String) {
        *crate::sync::lock(&self.gave_up) = Some(reason);
    }

    /// Why the controller stopped for good, if it did.
    pub fn gave_up(&self) -> Option<String> {
        crate::sync::lock(&self.gave_up).clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;

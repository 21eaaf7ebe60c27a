//! What a scrape shows after the controller's bookkeeping, and the state gauges computed from
//! the caches.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::reflector;
use kube::runtime::watcher;

use super::*;
use crate::api::NodeRole;
use crate::api::{
    HostRecord, HostState, NodeCount, NodeSet, SIPClusterSpec, SIPClusterStatus, TransitionRecord,
};

/// The value of the first sample line starting with `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn cluster(name: &str, phase: Phase, reason: &str, hosts: &[(&str, NodeRole)]) -> SIPCluster {
    let mut c = SIPCluster::new(
        name,
        SIPClusterSpec {
            nodes: BTreeMap::from([(
                NodeRole::Worker,
                NodeSet {
                    count: Some(NodeCount {
                        active: 2,
                        standby: 1,
                    }),
                    ..NodeSet::default()
                },
            )])
            .into(),
            ..SIPClusterSpec::default()
        },
    );
    c.metadata.namespace = Some("tenants".into());
    let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
    c.status = Some(SIPClusterStatus {
        phase: Some(phase),
        history: vec![TransitionRecord {
            event: None,
            time: at.clone(),
            from: None,
            to: phase,
            reason: "Created".into(),
            message: String::new(),
        }],
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at,
        }],
        hosts: hosts
            .iter()
            .map(|(n, role)| HostRecord {
                name: n.to_string(),
                namespace: "metal3".into(),
                uid: None,
                role: *role,
                state: HostState::Labeled,
                reason: None,
                topology_domain: None,
                addresses: BTreeMap::new(),
                bmc_address: None,
            })
            .collect(),
        ..SIPClusterStatus::default()
    });
    c
}

fn host(name: &str) -> BareMetalHost {
    let mut h = BareMetalHost::new(name, Default::default());
    h.metadata.namespace = Some("metal3".into());
    h
}

#[test]
fn transitions_failures_and_reconciles_show_in_a_scrape() {
    let m = Metrics::new();
    m.transition(None, Phase::Gathering, None);
    m.transition(
        Some(Phase::Gathering),
        Phase::Extracting,
        Some(Duration::from_millis(300)),
    );
    m.failure(Phase::Gathering, "Unschedulable");
    m.reconciled("error", Some("Conflict"), Duration::from_millis(20));
    let text = m.render();
    let cases = [
        (
            "sip_phase_transitions_total{from=\"None\",to=\"Gathering\"}",
            1.0,
        ),
        (
            "sip_phase_transitions_total{from=\"Gathering\",to=\"Extracting\"}",
            1.0,
        ),
        ("sip_phase_duration_seconds_count{phase=\"Gathering\"}", 1.0),
        (
            "sip_phase_duration_seconds_bucket{phase=\"Gathering\",le=\"0.5\"}",
            1.0,
        ),
        (
            "sip_phase_duration_seconds_bucket{phase=\"Gathering\",le=\"0.25\"}",
            0.0,
        ),
        (
            "sip_phase_failures_total{phase=\"Gathering\",reason=\"Unschedulable\"}",
            1.0,
        ),
        (
            "controller_runtime_reconcile_total{controller=\"sipcluster\",result=\"error\"}",
            1.0,
        ),
        (
            "controller_runtime_reconcile_total{controller=\"sipcluster\",result=\"success\"}",
            0.0,
        ),
        (
            "controller_runtime_reconcile_errors_total{controller=\"sipcluster\"}",
            1.0,
        ),
        ("sip_reconcile_errors_total{error=\"Conflict\"}", 1.0),
        ("leader_election_master_status{name=\"sip-operator\"}", 0.0),
    ];
    for (series, want) in cases {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }
    #[cfg(target_os = "linux")]
    assert!(sample(&text, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);
}

#[test]
fn phase_series_exist_at_zero_before_the_first_transition() {
    // rate() sees the first transition after a start only as an increase from a scraped zero.
    let text = Metrics::new().render();
    for series in [
        "sip_phase_transitions_total{from=\"None\",to=\"Gathering\"}",
        "sip_phase_transitions_total{from=\"Labeling\",to=\"Ready\"}",
        "sip_phase_transitions_total{from=\"Ready\",to=\"Gathering\"}",
        "sip_phase_duration_seconds_count{phase=\"Gathering\"}",
        "sip_phase_duration_seconds_count{phase=\"DeployingInfra\"}",
        "sip_phase_duration_seconds_bucket{phase=\"Extracting\",le=\"+Inf\"}",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series} in:\n{text}");
    }
    // Only edges of the machine: a pair it never takes would be a series that is always zero.
    assert_eq!(
        sample(
            &text,
            "sip_phase_transitions_total{from=\"Ready\",to=\"Extracting\"}"
        ),
        None
    );
}

#[test]
fn state_gauges_are_computed_from_the_caches() {
    let m = Metrics::new();
    let (clusters, mut cw) = reflector::store();
    let (hosts, mut hw) = reflector::store();
    for c in [
        cluster(
            "a",
            Phase::Ready,
            "ReconciliationSucceeded",
            &[("h1", NodeRole::Worker), ("h2", NodeRole::Worker)],
        ),
        cluster("b", Phase::Gathering, "Unschedulable", &[]),
    ] {
        cw.apply_watcher_event(&watcher::Event::Apply(c));
    }
    for h in ["h1", "h2", "h3", "h4"] {
        hw.apply_watcher_event(&watcher::Event::Apply(host(h)));
    }
    m.watch(clusters, hosts);
    let text = m.render();
    let cases = [
        ("sip_clusters{phase=\"Ready\"}", 1.0),
        ("sip_clusters{phase=\"Gathering\"}", 1.0),
        ("sip_clusters{phase=\"Labeling\"}", 0.0),
        ("sip_hosts_claimed{role=\"Worker\"}", 2.0),
        ("sip_hosts_wanted{role=\"Worker\"}", 6.0),
        ("sip_hosts_free", 2.0),
        (
            "sip_cluster_hosts_available{role=\"Worker\",sipcluster=\"a\",sipcluster_namespace=\"tenants\"}",
            2.0,
        ),
        ("sip_hosts", 4.0),
        (
            "sip_cluster_phase_entered_timestamp_seconds{phase=\"Gathering\",ready_reason=\"Unschedulable\",sipcluster=\"b\",sipcluster_namespace=\"tenants\"}",
            1_700_000_000.0,
        ),
    ];
    for (series, want) in cases {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }

    // A deleted cluster's series goes with it.
    let (clusters, mut cw) = reflector::store();
    cw.apply_watcher_event(&watcher::Event::Apply(cluster(
        "a",
        Phase::Ready,
        "ReconciliationSucceeded",
        &[],
    )));
    let m2 = Metrics::new();
    m2.watch(clusters, reflector::store().0);
    let text = m2.render();
    assert!(!text.contains("sipcluster=\"b\""), "{text}");
}

const DASHBOARD: &str = include_str!("../../manifests/monitoring/sip-dashboard.json");
const ALERTS: &str = include_str!("../../manifests/monitoring/alerts.yaml");

/// Every metric name an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            let known_prefix = [
                "sip_",
                "controller_runtime_",
                "leader_election_",
                "process_",
            ]
            .iter()
            .any(|p| word.starts_with(p));
            if known_prefix {
                names.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

/// Metric families a scrape declares, with histogram sample suffixes.
fn exported() -> Vec<String> {
    // Families without a series are not printed: give every family one.
    let m = Metrics::new();
    m.transition(
        Some(Phase::Gathering),
        Phase::Extracting,
        Some(Duration::ZERO),
    );
    m.failure(Phase::Gathering, "x");
    m.reconciled("error", Some("x"), Duration::ZERO);
    let (clusters, mut w) = reflector::store();
    w.apply_watcher_event(&watcher::Event::Apply(cluster("a", Phase::Ready, "", &[])));
    m.watch(clusters, reflector::store().0);
    m.api_requests.with_label_values(&["get", "x", "200"]).inc();
    m.api_latency.with_label_values(&["get", "x"]).observe(0.1);
    m.rest_client_requests
        .with_label_values(&["200", "GET", "h"])
        .inc();
    let text = m.render();
    let mut names = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.push(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn the_dashboard_uses_its_variables_and_only_exported_metrics() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    assert_eq!(d["uid"], "sip-operator", "a stable uid keeps links working");
    let vars: Vec<(&str, &str)> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["type"].as_str().unwrap()))
        .collect();
    for want in [
        ("datasource", "datasource"),
        ("namespace", "query"),
        ("cluster", "query"),
    ] {
        assert!(vars.contains(&want), "variable {want:?} missing: {vars:?}");
    }
    let exported = exported();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            if expr.contains("rate(") {
                assert!(expr.contains("[$__rate_interval]"), "{title}: {expr}");
            }
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            for name in names {
                assert!(exported.contains(&name), "{title}: {name} is not exported");
            }
        }
    }
}

#[test]
fn alert_expressions_use_only_exported_metrics() {
    let rule: serde_json::Value = serde_norway::from_str(ALERTS).unwrap();
    let exported = exported();
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for want in [
        "SIPClusterStuckInPhase",
        "SIPClusterUnschedulable",
        "SIPOperatorReconcileErrors",
        "SIPOperatorDown",
        "SIPOperatorNoLeader",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    for r in rules {
        let expr = r["expr"].as_str().unwrap();
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "{}: {name} is not exported",
                r["alert"]
            );
        }
        assert!(r["annotations"]["summary"].is_string());
    }
}

//! The plugin's pure parts on made-up inventories; `tests/integration/plugin.rs` runs the
//! binary against a control plane and compares its plans with what the operator then does.

use serde_json::{Value, json};

use super::hosts::{Standing, rows, table};
use super::plan::plan;
use super::why::story;
use super::{Inventory, overrides};
use crate::api::{BareMetalHost, SIPCluster};

const FLAVOR: &str = "vino.airshipit.org/flavor";
const RACK: &str = "vino.airshipit.org/rack";

fn host(name: &str, flavor: &str, rack: &str, edit: impl FnOnce(&mut Value)) -> BareMetalHost {
    let mut h = json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": name, "namespace": "metal3", "labels": {FLAVOR: flavor, RACK: rack}},
        "spec": {"networkData": {"name": format!("{name}-net"), "namespace": "metal3"}},
    });
    edit(&mut h);
    serde_json::from_value(h).unwrap()
}

fn cluster(namespace: &str, name: &str, cp: u32, workers: u32, ledger: Value) -> SIPCluster {
    let role = |flavor: &str, active: u32| {
        json!({"labelSelector": {"matchLabels": {FLAVOR: flavor}}, "topologyKey": RACK,
               "count": {"active": active, "standby": 0}})
    };
    serde_json::from_value(json!({
        "apiVersion": "airship.airshipit.org/v1", "kind": "SIPCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodes": {"ControlPlane": role("cp", cp), "Worker": role("worker", workers)}},
        "status": {"hosts": ledger},
    }))
    .unwrap()
}

fn record(name: &str, role: &str, state: &str, rack: &str) -> Value {
    json!({"name": name, "namespace": "metal3", "role": role, "state": state,
           "topologyDomain": rack})
}

/// Three control-plane hosts on two racks, three workers on three; `other/held` claims wk-3.
fn inventory() -> Inventory {
    Inventory {
        hosts: vec![
            host("cp-1", "cp", "r1", |_| {}),
            host("cp-2", "cp", "r1", |_| {}),
            host("cp-3", "cp", "r2", |_| {}),
            host("wk-1", "worker", "r1", |_| {}),
            host("wk-2", "worker", "r2", |_| {}),
            host("wk-3", "worker", "r3", |_| {}),
        ],
        clusters: vec![cluster(
            "other",
            "held",
            0,
            1,
            json!([record("wk-3", "Worker", "Labeled", "r3")]),
        )],
    }
}

#[test]
fn a_new_cluster_is_planned_one_host_per_domain_and_never_on_anothers_claim() {
    let p = plan(&inventory(), &cluster("t", "new", 2, 2, json!([])), None);
    assert!(p.schedulable, "{p}");
    let adds = |i: usize| -> Vec<(String, Option<String>)> {
        p.roles[i]
            .add
            .iter()
            .map(|l| (l.host.clone(), l.domain.clone()))
            .collect()
    };
    assert_eq!(p.roles[0].role.as_str(), "ControlPlane");
    let cp = adds(0);
    assert_eq!(cp.len(), 2);
    assert!(
        cp.contains(&("metal3/cp-3".into(), Some("r2".into()))),
        "{cp:?}"
    );
    assert_eq!(
        adds(1),
        [
            ("metal3/wk-1".to_string(), Some("r1".to_string())),
            ("metal3/wk-2".to_string(), Some("r2".to_string())),
        ]
    );
    let text = p.to_string();
    assert!(
        text.starts_with("SIPCluster t/new: the pool satisfies it (4 to add, 0 to release)"),
        "{text}"
    );
    assert!(
        text.contains("free; vino.airshipit.org/rack=r2 unused by the role"),
        "{text}"
    );
}

#[test]
fn an_unschedulable_plan_gives_the_operators_counts_and_who_holds_what() {
    let p = plan(&inventory(), &cluster("t", "big", 1, 3, json!([])), None);
    assert!(!p.schedulable);
    assert!(p.roles.iter().all(|r| r.add.is_empty()), "all or nothing");
    let blocked = p.roles[1]
        .unschedulable
        .as_ref()
        .expect("workers fall short");
    assert_eq!((blocked.have, blocked.addable), (0, 2));
    assert_eq!(blocked.counts.matching, 3);
    assert_eq!(blocked.counts.claimed_elsewhere, 1);
    assert!(
        blocked
            .message
            .starts_with("Worker: wanted 3, have 0, can add 2"),
        "{}",
        blocked.message
    );
    assert_eq!(blocked.held.len(), 1);
    assert_eq!(blocked.held[0].host, "metal3/wk-3");
    assert_eq!(blocked.held[0].by, "SIPCluster other/held (ledger)");
    let text = p.to_string();
    assert!(
        text.contains("the pool cannot satisfy it; nothing would be claimed"),
        "{text}"
    );
    assert!(
        text.contains("metal3/wk-3 is held by SIPCluster other/held (ledger)"),
        "{text}"
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["schedulable"], false);
    assert_eq!(
        json["roles"][1]["unschedulable"]["counts"]["claimedElsewhere"],
        1
    );
}

#[test]
fn a_change_to_a_running_cluster_keeps_members_and_releases_the_surplus() {
    let ledger = json!([
        record("cp-3", "ControlPlane", "Labeled", "r2"),
        record("wk-1", "Worker", "Labeled", "r1"),
        record("wk-2", "Worker", "Labeled", "r2"),
    ]);
    let running = cluster("t", "run", 1, 2, ledger);
    let mut spec = serde_json::to_value(&running.spec).unwrap();
    overrides::apply(&mut spec, &["Worker.count.active=1".into()]).unwrap();
    let smaller = SIPCluster {
        spec: serde_json::from_value(spec).unwrap(),
        ..running
    };
    let p = plan(&inventory(), &smaller, None);
    assert!(p.schedulable);
    assert_eq!(p.roles[0].keep.len(), 1);
    assert_eq!(p.roles[0].keep[0].domain.as_deref(), Some("r2"));
    assert_eq!(p.roles[1].keep.len() + p.roles[1].release.len(), 2);
    assert_eq!(p.roles[1].release.len(), 1);
    assert_eq!(p.roles[1].release[0].reason, "more hosts than wanted");
    assert!(p.roles.iter().all(|r| r.add.is_empty()));
}

#[test]
fn the_inventory_says_what_each_host_is_and_why() {
    let mut inv = inventory();
    inv.hosts.push(host("wk-4", "worker", "r4", |h| {
        h["metadata"]["annotations"] = json!({"baremetalhost.metal3.io/paused": ""});
    }));
    inv.hosts.push(host("wk-5", "worker", "r5", |h| {
        h["spec"]["consumerRef"] =
            json!({"kind": "Metal3Machine", "namespace": "capi", "name": "m1"});
    }));
    inv.hosts.push(host("wk-6", "worker", "r6", |h| {
        h["spec"].as_object_mut().unwrap().remove("networkData");
    }));
    inv.hosts.push(host("wk-7", "worker", "r7", |h| {
        h["metadata"]["labels"]["sip.airshipit.org/cluster-name"] = json!("old");
        h["metadata"]["labels"]["sip.airshipit.org/cluster-namespace"] = json!("legacy");
    }));
    inv.clusters.push(cluster(
        "t",
        "picky",
        0,
        1,
        json!([{"name": "wk-1", "namespace": "metal3", "role": "Worker", "state": "Unusable",
                "reason": "no IP on interface oam-ipv4"}]),
    ));
    let rows = rows(&inv, FLAVOR, RACK);
    let of = |name: &str| {
        rows.iter()
            .find(|r| r.host == format!("metal3/{name}"))
            .unwrap()
            .standing
            .clone()
    };
    assert_eq!(of("cp-1"), Standing::Free);
    assert_eq!(
        of("wk-3"),
        Standing::Claimed {
            cluster: "other/held".into(),
            role: Some("Worker".into()),
            note: None
        }
    );
    let why = |name: &str| match of(name) {
        Standing::Unusable { why } => why,
        other => panic!("{name}: {other:?}"),
    };
    assert!(
        why("wk-1").contains("SIPCluster t/picky found it unusable: no IP on interface oam-ipv4")
    );
    assert!(why("wk-4").contains("paused"));
    assert!(
        why("wk-5").contains("held by Metal3Machine capi/m1"),
        "{}",
        why("wk-5")
    );
    assert!(why("wk-6").contains("no spec.networkData"));
    assert!(matches!(of("wk-7"), Standing::Claimed { ref cluster, .. } if cluster == "legacy/old"));
    // Sorted by flavor, then domain.
    assert_eq!(rows[0].host, "metal3/cp-1");
    assert_eq!(rows.last().unwrap().host, "metal3/wk-7");
    let text = table(&rows);
    assert!(text.lines().next().unwrap().starts_with("HOST"), "{text}");
    assert!(text.contains("cp: 3 free, 0 claimed, 0 unusable"), "{text}");
    assert!(
        text.contains("worker: 1 free, 2 claimed, 4 unusable"),
        "{text}"
    );
}

#[test]
fn the_story_names_the_phase_the_fix_and_the_unusable_hosts() {
    let mut c = cluster(
        "t",
        "stuck",
        1,
        1,
        json!([{"name": "wk-1", "namespace": "metal3", "role": "Worker", "state": "Unusable",
                "reason": "networkData Secret metal3/wk-1-net not found"}]),
    );
    let status = c.status.as_mut().unwrap();
    status.phase = Some(crate::api::Phase::Gathering);
    status.conditions =
        vec![serde_json::from_value(json!({
        "type": "Ready", "status": "False", "reason": "Unschedulable",
        "message": "Worker: wanted 1 ...; add matching hosts or lower spec.nodes.Worker.count",
        "lastTransitionTime": "2026-12-07T00:00:00Z",
    }))
    .unwrap()];
    let text = story(&c, &[]);
    assert!(text.starts_with("SIPCluster t/stuck: Gathering"), "{text}");
    assert!(
        text.contains("Ready=False Unschedulable: Worker: wanted 1"),
        "{text}"
    );
    assert!(
        text.contains("metal3/wk-1 (Worker): networkData Secret metal3/wk-1-net not found"),
        "{text}"
    );
    c.status = None;
    assert!(story(&c, &[]).contains("no status yet"));
}

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

fn meta(rv: &str, generation: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some("tenant-lb-cp".into()),
        namespace: Some("ns".into()),
        resource_version: Some(rv.into()),
        generation: Some(generation),
        labels: Some([(LABEL_CLUSTER_NAME.to_string(), "tenant".to_string())].into()),
        owner_references: Some(vec![OwnerReference {
            api_version: "airship.airshipit.org/v1".into(),
            kind: "SIPCluster".into(),
            name: "tenant".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

fn tenant() -> ObjectRef<SIPCluster> {
    ObjectRef::new("tenant").within("ns")
}

fn child(kind: &'static str) -> ChildRef {
    ChildRef::new(kind, "ns", "tenant-lb-cp")
}

#[test]
fn the_operators_own_writes_are_not_drift_in_any_order() {
    let d = Drift::default();
    let svc = child("Service");
    // The event arrives while the write is in flight...
    let w = d.writing(&svc);
    assert_eq!(d.observe("Service", &meta("10", 0), false), None);
    w.written(Some("10".into()));
    // ...or after it, or late, after a second write.
    assert_eq!(d.observe("Service", &meta("10", 0), false), None);
    let w = d.writing(&svc);
    w.written(Some("14".into()));
    assert_eq!(d.observe("Service", &meta("10", 0), false), None);
    assert_eq!(d.observe("Service", &meta("14", 0), false), None);
    assert!(d.take(&tenant()).is_empty());
}

#[test]
fn another_writers_change_or_deletion_is_drift_of_the_owner() {
    let d = Drift::default();
    let svc = child("Service");
    let w = d.writing(&svc);
    w.written(Some("10".into()));
    assert_eq!(d.observe("Service", &meta("11", 0), false), Some(tenant()));
    assert_eq!(d.observe("Service", &meta("11", 0), true), Some(tenant()));
    assert_eq!(
        d.take(&tenant()),
        [
            "Service tenant-lb-cp changed",
            "Service tenant-lb-cp deleted"
        ]
    );
    assert!(d.take(&tenant()).is_empty(), "taken once");
}

#[test]
fn a_deployment_drifts_on_its_spec_not_its_status() {
    let d = Drift::default();
    let dep = child("Deployment");
    let w = d.writing(&dep);
    w.written(Some("1".into()));
    // The Deployment controller updating status: new resourceVersion, same generation.
    assert_eq!(d.observe("Deployment", &meta("20", 1), false), None);
    // Someone scaled it.
    assert_eq!(
        d.observe("Deployment", &meta("21", 2), false),
        Some(tenant())
    );
}

#[test]
fn the_operators_own_deletion_is_not_drift() {
    let d = Drift::default();
    let cm = child("ConfigMap");
    d.written(&cm, Some("5".into()));
    d.deleting(&cm);
    assert_eq!(d.observe("ConfigMap", &meta("5", 0), true), None);
    assert_eq!(d.marked(), 0, "the mark goes with the object");
    // A delete that found nothing leaves no mark either.
    d.deleting(&cm);
    d.absent(&cm);
    assert_eq!(d.marked(), 0);
}

#[test]
fn after_a_restart_what_exists_is_the_baseline_and_a_deletion_is_drift() {
    let d = Drift::default();
    assert_eq!(d.observe("Service", &meta("7", 0), false), None);
    assert_eq!(d.observe("Service", &meta("7", 0), false), None);
    assert_eq!(d.observe("Service", &meta("8", 0), false), Some(tenant()));
    let fresh = Drift::default();
    assert_eq!(
        fresh.observe("Service", &meta("7", 0), true),
        Some(tenant())
    );
}

fn written_by(entries: &[(&str, Option<&str>, i64)]) -> ObjectMeta {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    ObjectMeta {
        managed_fields: Some(
            entries
                .iter()
                .map(|(manager, subresource, at)| ManagedFieldsEntry {
                    manager: Some(manager.to_string()),
                    subresource: subresource.map(str::to_string),
                    time: Some(Time(
                        k8s_openapi::jiff::Timestamp::from_second(*at).unwrap(),
                    )),
                    ..ManagedFieldsEntry::default()
                })
                .collect(),
        ),
        ..meta("7", 2)
    }
}

#[test]
fn an_edit_made_while_the_operator_was_down_is_told_by_the_managed_fields() {
    let ours = crate::controller::MANAGER;
    let cases = [
        (vec![(ours, None, 10)], false, "only the operator wrote it"),
        (
            vec![(ours, None, 10), ("kubectl-edit", None, 20)],
            true,
            "edited after",
        ),
        (
            vec![(ours, None, 10), ("kubectl-edit", None, 10)],
            true,
            "in the same second",
        ),
        (
            vec![("kubectl-edit", None, 5), (ours, None, 10)],
            false,
            "repaired since",
        ),
        (
            vec![(ours, None, 10), ("kube-controller-manager", None, 20)],
            false,
            "the Deployment controller's revision annotation",
        ),
        (
            vec![(ours, None, 10), ("kubectl", Some("status"), 20)],
            false,
            "status only",
        ),
        (
            vec![("kubectl-edit", None, 20)],
            false,
            "never applied by the operator",
        ),
    ];
    for (entries, edited, msg) in cases {
        assert_eq!(edited_by_others(&written_by(&entries)), edited, "{msg}");
    }
    // First sight after a restart: the baseline, or drift when edited meanwhile.
    let d = Drift::default();
    let edited = written_by(&[(ours, None, 10), ("kubectl-edit", None, 20)]);
    assert_eq!(d.observe("Deployment", &edited, false), Some(tenant()));
    assert_eq!(
        d.take(&tenant()),
        ["Deployment tenant-lb-cp changed while the operator was not running"]
    );
    assert_eq!(d.observe("Deployment", &edited, false), None, "told once");
    let secret = child("Secret");
    assert!(!d.matches(&secret, "7", true));
    assert!(d.matches(&secret, "7", true), "the baseline is taken");
}

#[test]
fn a_child_never_seen_once_its_kind_is_listed_is_missing() {
    let d = Drift::default();
    let (deployment, service) = (child("Deployment"), child("Service"));
    let both = || [deployment.clone(), service.clone()];
    // Before its watch has listed, nothing can be said to be missing.
    let look = || d.take_or_missing(&tenant(), both());
    assert!(look().is_empty());
    d.listed("Deployment");
    d.listed("Service");
    assert_eq!(
        look(),
        [
            "Deployment tenant-lb-cp missing",
            "Service tenant-lb-cp missing"
        ]
    );
    // Seen by a watch, or written by the operator (its event may come later).
    d.observe("Deployment", &meta("3", 1), false);
    let w = d.writing(&service);
    w.written(Some("4".into()));
    assert!(look().is_empty());
    // A deletion the watch saw is told as one (taken), then the object is missing.
    d.observe("Service", &meta("5", 0), true);
    assert_eq!(look(), ["Service tenant-lb-cp deleted"]);
    assert_eq!(look(), ["Service tenant-lb-cp missing"]);
}

#[tokio::test]
async fn waiting_for_the_first_lists_ends_when_every_kind_has_listed() {
    let d = std::sync::Arc::new(Drift::default());
    let waiter = tokio::spawn({
        let d = d.clone();
        async move { d.until_listed(&["Deployment", "Service"]).await }
    });
    d.listed("Deployment");
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "one kind is not enough");
    d.listed("Service");
    tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken once both kinds listed")
        .unwrap();
}

#[test]
fn objects_not_owned_by_a_sipcluster_are_ignored() {
    let d = Drift::default();
    let mut m = meta("1", 0);
    m.owner_references = None;
    assert_eq!(d.observe("Service", &m, true), None);
    let mut m = meta("1", 0);
    m.labels = None;
    assert_eq!(d.observe("Service", &m, true), None);
    let mut m = meta("1", 0);
    m.owner_references.as_mut().unwrap()[0].name = "other".into();
    assert_eq!(d.observe("Service", &m, true), None);
    assert_eq!(d.marked(), 0);
}

#[test]
fn a_failed_write_leaves_the_next_event_as_baseline() {
    let d = Drift::default();
    let svc = child("Service");
    let w = d.writing(&svc);
    w.written(None);
    assert_eq!(d.observe("Service", &meta("3", 0), false), None);
    assert!(d.matches(&svc, "3", false));
    assert!(!d.matches(&svc, "4", false));
}

#[test]
fn only_the_last_few_versions_are_remembered() {
    let d = Drift::default();
    let svc = child("Secret");
    for v in 1..=10 {
        let w = d.writing(&svc);
        w.written(Some(v.to_string()));
    }
    assert!(d.matches(&svc, "10", false) && d.matches(&svc, "7", false));
    assert!(!d.matches(&svc, "6", false));
}

#[test]
fn a_write_cancelled_in_flight_hides_no_later_edit() {
    let d = Drift::default();
    let svc = child("Service");
    let w = d.writing(&svc);
    w.written(Some("10".into()));
    // The next apply is dropped with its request in flight (the turn's time limit).
    drop(d.writing(&svc));
    // Its own write arrives: the baseline, not drift...
    assert_eq!(d.observe("Service", &meta("12", 0), false), None);
    // ...and someone else's edit after it is drift, not hidden behind a mark left `Writing`.
    assert_eq!(d.observe("Service", &meta("13", 0), false), Some(tenant()));
}

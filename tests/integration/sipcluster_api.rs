//! The predecessor's manifest is accepted unchanged and means the same to the Rust type.

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sip::api::{NodeRole, SIPCluster};

use crate::common::{SAMPLE_SIPCLUSTER, document_of_kind, test_env, unserved_sample};

#[tokio::test]
async fn predecessor_manifest_round_trips_through_the_api_and_the_rust_type() {
    let env = test_env("roundtrip").await;
    // Exactly the predecessor's manifest (not even renamed).
    let mut manifest = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    manifest["metadata"]["namespace"] = json!(env.namespace);
    let original_spec = manifest["spec"].clone();

    let typed: SIPCluster = serde_json::from_value(manifest).expect("sample parses as SIPCluster");
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &typed)
        .await
        .expect("the API server accepts the predecessor's manifest");

    // What the server stored, untyped: every field of the manifest is there, unchanged.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &kube::api::ApiResource::erase::<SIPCluster>(&()),
    );
    let stored_raw = raw.get("sipcluster-system").await.expect("get raw");
    assert_eq!(
        stored_raw.data["spec"], original_spec,
        "the server must store the manifest's spec unchanged"
    );

    // Read back through the Rust type and serialize again: nothing lost, nothing added.
    let stored = api.get("sipcluster-system").await.expect("get typed");
    assert_eq!(stored.spec, typed.spec);
    assert_eq!(
        serde_json::to_value(&stored.spec).unwrap(),
        original_spec,
        "the Rust type must serialize back to the same JSON"
    );
    let cp = &stored.spec.nodes[&NodeRole::ControlPlane];
    assert_eq!(cp.topology_key(), Some("vino.airshipit.org/rack"));
    assert_eq!(cp.wanted(), 2);
    assert_eq!(
        stored.spec.services.load_balancer_worker[0]
            .node_port_range
            .end,
        30011
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let env = test_env("columns").await;
    let manifest = unserved_sample(&env, "sipcluster-system");
    let typed: SIPCluster = serde_json::from_value(manifest).unwrap();
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &typed).await.unwrap();

    let status = json!({
        "apiVersion": "airship.airshipit.org/v1",
        "kind": "SIPCluster",
        "status": {
            "phase": "Labeling",
            "controlPlane": "2/2",
            "workers": "1/2",
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "Progressing",
                "message": "labeling hosts", "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1
            }]
        }
    });
    api.patch_status(
        "sipcluster-system",
        &PatchParams::apply("sip-test").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("status subresource accepts the status");

    let table = env.kubectl(&["get", "sip", "-n", &env.namespace]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "READY", "CONTROLPLANE", "WORKERS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["sipcluster-system", "Labeling", "False", "2/2", "1/2"],
        "{table}"
    );
}

#[tokio::test]
async fn status_history_is_bounded_by_the_schema() {
    let env = test_env("history").await;
    let manifest = unserved_sample(&env, "sipcluster-system");
    let typed: SIPCluster = serde_json::from_value(manifest).unwrap();
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &typed).await.unwrap();

    let record = json!({"time": "2026-01-01T00:00:00Z", "to": "Gathering", "reason": "Created"});
    let history = |n: usize| -> Value {
        json!({
            "apiVersion": "airship.airshipit.org/v1", "kind": "SIPCluster",
            "status": {"history": vec![record.clone(); n]}
        })
    };
    let pp = PatchParams::apply("sip-test").force();
    api.patch_status(
        "sipcluster-system",
        &pp,
        &Patch::Apply(&history(sip::api::sipcluster::HISTORY_LIMIT)),
    )
    .await
    .expect("a full history is accepted");
    let err = api
        .patch_status(
            "sipcluster-system",
            &pp,
            &Patch::Apply(&history(sip::api::sipcluster::HISTORY_LIMIT + 1)),
        )
        .await
        .expect_err("a history longer than the limit is refused");
    assert!(err.to_string().contains("must have at most"), "{err}");
}

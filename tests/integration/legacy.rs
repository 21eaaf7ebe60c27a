//! A SIPCluster stored under the predecessor's looser schema (any role key, no
//! `nodeInterfaceId`, `nodePort: 0`, no `count`) must not stop the operator: the list and
//! watch of every SIPCluster go on, the good cluster beside it reaches Ready, and the old one
//! is told what to fix, field by field.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event as KubeEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};
use sip_envtest::{ControlPlane, create_namespace};

use crate::common::{
    SAMPLE_SIPCLUSTER, assert_uninterrupted_story, document_of_kind, load_hosts_into,
    operator_settings,
};

const CRD: &str = "sipclusters.airship.airshipit.org";

/// Puts the SIPCluster CRD's spec schema back to what the predecessor's allowed (anything),
/// or, with `ours`, to the CRD sip ships.
async fn set_schema(client: &kube::Client, ours: bool) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd: CustomResourceDefinition = serde_norway::from_str(include_str!(
        "../../crd/airship.airshipit.org_sipclusters.yaml"
    ))
    .unwrap();
    if !ours {
        let schema = crd.spec.versions[0]
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .unwrap();
        let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
        *spec = serde_json::from_value(
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        )
        .unwrap();
    }
    api.patch(
        CRD,
        &PatchParams::apply("sip-envtest").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_legacy_sipcluster_beside_a_good_one_gets_a_clear_answer_and_stops_nothing() {
    // A control plane of its own: the test changes the CRD.
    let cp = ControlPlane::start().await.expect("a control plane");
    let admin = cp.client().await.unwrap();
    let namespace = create_namespace(&admin, "legacy").await.unwrap();
    load_hosts_into(&admin, &namespace).await;
    let clusters: Api<SIPCluster> = Api::namespaced(admin.clone(), &namespace);
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &namespace,
        &kube::api::ApiResource::erase::<SIPCluster>(&()),
    );

    // Stored while the schema was the predecessor's, then the schema tightened.
    set_schema(&admin, false).await;
    let legacy = json!({
        "apiVersion": "airship.airshipit.org/v1", "kind": "SIPCluster",
        "metadata": {"name": "old", "namespace": namespace},
        "spec": {
            "nodes": {"master": {"count": {"active": 1}}, "Worker": {"labelSelector": {}}},
            "services": {"loadBalancerControlPlane": [{"image": "haproxy:2.3.2", "nodePort": 0}]},
        },
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The API server takes a moment to serve the loosened schema.
        let object: kube::api::DynamicObject = serde_json::from_value(legacy.clone()).unwrap();
        match dynamic.create(&PostParams::default(), &object).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the legacy object was refused: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    set_schema(&admin, true).await;
    let mut good = document_of_kind(SAMPLE_SIPCLUSTER, "SIPCluster");
    good["metadata"] = json!({"name": "good", "namespace": namespace});
    let good: SIPCluster = serde_json::from_value(good).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = clusters.create(&PostParams::default(), &good).await {
        assert!(
            Instant::now() < deadline,
            "the good object was refused: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The legacy object is still stored as it was, and the typed list reads it.
    let listed = clusters.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items.len(),
        2,
        "a legacy object must not break the list"
    );

    let metrics = std::sync::Arc::new(sip::metrics::Metrics::new());
    let operator = tokio::spawn(sip::controller::run(
        admin.clone(),
        operator_settings(&namespace, "legacy", &metrics),
        std::future::pending(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (good, old) = loop {
        let good = clusters.get("good").await.unwrap();
        let old = clusters.get("old").await.unwrap();
        let ready = good.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready);
        let told = old
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "InvalidSpec"));
        if ready && told {
            break (good, old);
        }
        assert!(
            Instant::now() < deadline,
            "good: {:?}; old: {:#?}",
            good.status.and_then(|s| s.phase),
            old.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_uninterrupted_story(good.status.as_ref().unwrap(), "beside a legacy object");
    let condition = old
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(condition.status, "False");
    for field in [
        "spec.nodes.master: unknown node role",
        "spec.services.loadBalancerControlPlane[0].nodeInterfaceId is missing",
        "spec.services.loadBalancerControlPlane[0].nodePort is 0",
    ] {
        assert!(
            condition.message.contains(field),
            "{field}: {}",
            condition.message
        );
    }
    let events: Api<KubeEvent> = Api::namespaced(admin.clone(), &namespace);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let warned = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidSpec")
                    && e.type_.as_deref() == Some("Warning")
                    && e.involved_object.name.as_deref() == Some("old")
                    && e.message
                        .as_deref()
                        .unwrap_or_default()
                        .contains("spec.nodes.master")
            });
        if warned {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Warning Event names the field"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Fixed by its owner, it goes on like any other (here: it wants nothing and is Ready).
    clusters
        .patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "nodes": {"master": null},
                "services": {"loadBalancerControlPlane": null},
            }})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while clusters
        .get("old")
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase)
        != Some(Phase::Ready)
    {
        assert!(
            Instant::now() < deadline,
            "the fixed legacy cluster never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.abort();
}

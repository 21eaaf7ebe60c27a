//! What the schema rejects at admission, and that each rejection tells the user what to fix.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use sip::api::SIPCluster;

use crate::common::{test_env, unserved_sample};

type Mutation = fn(&mut Value);

/// Sets the field at `pointer`; its parent object must be in the sample.
fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} not in the sample"));
    parent.insert(key.to_string(), new);
}

fn remove(v: &mut Value, pointer: &str, key: &str) {
    v.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key))
        .unwrap_or_else(|| panic!("{pointer}/{key} not in the sample"));
}

const CP: &str = "/spec/nodes/ControlPlane";
const LB_CP: &str = "/spec/services/loadBalancerControlPlane/0";
const LB_W: &str = "/spec/services/loadBalancerWorker/0";
const JUMP: &str = "/spec/services/jumpHost/0";

#[tokio::test]
async fn invalid_manifests_are_rejected_with_a_message_that_names_the_fix() {
    let env = test_env("admission").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &ApiResource::erase::<SIPCluster>(&()),
    );
    let cases: Vec<(&str, Mutation, &[&str])> = vec![
        (
            "negative active count",
            |v| set(v, &format!("{CP}/count/active"), json!(-1)),
            &[
                "spec.nodes.ControlPlane.count.active",
                "greater than or equal to 0",
            ],
        ),
        (
            "negative standby count",
            |v| set(v, "/spec/nodes/Worker/count/standby", json!(-2)),
            &[
                "spec.nodes.Worker.count.standby",
                "greater than or equal to 0",
            ],
        ),
        (
            "unknown role",
            |v| {
                let worker = v["spec"]["nodes"]["Worker"].clone();
                remove(v, "/spec/nodes", "Worker");
                set(
                    v,
                    "/spec/nodes",
                    json!({"ControlPlane": v["spec"]["nodes"]["ControlPlane"].clone(), "Master": worker}),
                );
            },
            &[
                "spec.nodes",
                "accepts only the keys ControlPlane and Worker",
            ],
        ),
        (
            "reversed port range",
            |v| {
                set(
                    v,
                    &format!("{LB_W}/nodePortRange"),
                    json!({"start": 30011, "end": 30002}),
                )
            },
            &["nodePortRange.start must not be greater than nodePortRange.end"],
        ),
        (
            "bad selector operator",
            |v| {
                set(
                    v,
                    &format!("{CP}/labelSelector"),
                    json!({"matchExpressions": [{"key": "rack", "operator": "Equals", "values": ["a"]}]}),
                )
            },
            &[
                "Unsupported value: \"Equals\"",
                "\"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
            ],
        ),
        (
            "In without values",
            |v| {
                set(
                    v,
                    &format!("{CP}/labelSelector"),
                    json!({"matchExpressions": [{"key": "rack", "operator": "In"}]}),
                )
            },
            &["operator In on key rack needs a non-empty values list"],
        ),
        (
            "Exists with values",
            |v| {
                set(
                    v,
                    &format!("{CP}/labelSelector"),
                    json!({"matchExpressions": [{"key": "rack", "operator": "Exists", "values": ["a"]}]}),
                )
            },
            &["operator Exists on key rack must not list values"],
        ),
        (
            "auth issuer not a URL",
            |v| {
                v["spec"]["services"]["auth"] =
                    json!([{"issuer": "dex.example", "configSecret": "dex"}])
            },
            &["auth issuer must be an http(s) URL"],
        ),
        (
            "auth without its config secret",
            |v| v["spec"]["services"]["auth"] = json!([{"issuer": "https://dex.example"}]),
            &["spec.services.auth[0].configSecret", "Required value"],
        ),
        (
            "empty image",
            |v| set(v, &format!("{JUMP}/image"), json!("")),
            &["spec.services.jumpHost[0].image", "at least 1 chars long"],
        ),
        (
            "node port zero",
            |v| set(v, &format!("{LB_CP}/nodePort"), json!(0)),
            &[
                "spec.services.loadBalancerControlPlane[0].nodePort",
                "greater than or equal to 1",
            ],
        ),
        (
            "node port above 65535",
            |v| set(v, &format!("{JUMP}/nodePort"), json!(70000)),
            &[
                "spec.services.jumpHost[0].nodePort",
                "less than or equal to 65535",
            ],
        ),
        (
            "port range end above 65535",
            |v| set(v, &format!("{LB_W}/nodePortRange/end"), json!(65536)),
            &["nodePortRange.end", "less than or equal to 65535"],
        ),
        (
            "missing nodeInterfaceId",
            |v| remove(v, LB_W, "nodeInterfaceId"),
            &[
                "spec.services.loadBalancerWorker[0].nodeInterfaceId",
                "Required value",
            ],
        ),
        (
            "jump host without its private keys secret",
            |v| remove(v, JUMP, "nodeSSHPrivateKeys"),
            &[
                "spec.services.jumpHost[0].nodeSSHPrivateKeys",
                "Required value",
            ],
        ),
        (
            "count that is not a number",
            |v| set(v, &format!("{CP}/count/active"), json!("one")),
            &[
                "spec.nodes.ControlPlane.count.active",
                "must be of type integer",
            ],
        ),
        (
            "a port range wider than 100 ports",
            |v| {
                set(
                    v,
                    &format!("{LB_W}/nodePortRange"),
                    json!({"start": 30000, "end": 30100}),
                )
            },
            &["nodePortRange spans at most 100 ports"],
        ),
        (
            "more than eight instances of a service",
            |v| {
                let one = v.pointer(JUMP).unwrap().clone();
                set(v, "/spec/services/jumpHost", json!(vec![one; 9]));
            },
            &["spec.services.jumpHost", "must have at most 8 items"],
        ),
        (
            "name too long for a label value",
            |v| set(v, "/metadata/name", json!("c".repeat(64))),
            &["use 63 characters at most"],
        ),
    ];
    assert!(cases.len() >= 8);
    for (i, (what, mutate, expected)) in cases.iter().enumerate() {
        let mut manifest = unserved_sample(&env, &format!("invalid-{i}"));
        mutate(&mut manifest);
        let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
        let err = match api.create(&PostParams::default(), &obj).await {
            Ok(_) => panic!("{what}: the API server accepted an invalid manifest"),
            Err(kube::Error::Api(status)) => status,
            Err(e) => panic!("{what}: unexpected error {e}"),
        };
        assert_eq!(err.code, 422, "{what}: {}", err.message);
        for needle in *expected {
            assert!(
                err.message.contains(needle),
                "{what}: the rejection should contain {needle:?}, got: {}",
                err.message
            );
        }
    }
}

#[tokio::test]
async fn a_sipcluster_without_count_or_topology_is_accepted() {
    // The predecessor crashed on a missing count; the API still accepts it, meaning zero hosts.
    let env = test_env("lenient").await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut manifest = unserved_sample(&env, "sipcluster-system");
    remove(&mut manifest, CP, "count");
    remove(&mut manifest, CP, "topologyKey");
    // Images have defaults (the predecessor required them).
    remove(&mut manifest, LB_CP, "image");
    let typed: SIPCluster = serde_json::from_value(manifest).unwrap();
    let created = api.create(&PostParams::default(), &typed).await.unwrap();
    let cp = &created.spec.nodes[&sip::api::NodeRole::ControlPlane];
    assert_eq!(cp.wanted(), 0);
    assert_eq!(cp.topology_key(), None);
    assert_eq!(
        created.spec.services.load_balancer_control_plane[0]
            .common
            .image,
        None
    );
}

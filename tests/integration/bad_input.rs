//! Malformed input the schema cannot catch: each case gets a clear answer (the Ready condition
//! or a Warning Event naming the fix), nothing is claimed wrongly, and the operator keeps
//! serving a healthy cluster beside the broken one.

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sip::api::{BareMetalHost, LABEL_CLUSTER_NAME, Phase, SIPCluster};

use crate::common::{
    TestEnv, load_hosts, phase, sample_cluster, start_operator, test_env, wait_for,
};

const CONTROL_PLANE_HOSTS: [&str; 4] = ["cp-1", "cp-2", "cp-3", "cp-4"];

/// For a host name: which object to patch (`secret/NAME` or `bmh/NAME`) and the merge patch.
type PoolChange = fn(&str) -> (String, Value);

/// How a case breaks things: the broken cluster's spec, and what it does to the pool.
struct Case {
    what: &'static str,
    spec: fn(&mut Value),
    pool: Option<PoolChange>,
    /// Every fragment must appear in the Ready condition or in one Warning Event.
    expect: &'static [&'static str],
}

fn secret_patch(name: String, data: Value) -> (String, Value) {
    (format!("secret/{name}"), json!({"data": data}))
}

/// A Secret data value (base64 on the wire).
fn b64(s: &str) -> Value {
    serde_json::to_value(ByteString(s.as_bytes().to_vec())).unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "selector that matches nothing",
            spec: |s| {
                s["nodes"]["ControlPlane"]["labelSelector"] =
                    json!({"matchLabels": {"vino.airshipit.org/flavor": "gpu"}})
            },
            pool: None,
            expect: &["Unschedulable", "of 0 hosts matching the selector"],
        },
        Case {
            what: "topology key no host has",
            spec: |s| s["nodes"]["ControlPlane"]["topologyKey"] = json!("example.com/zone"),
            pool: None,
            expect: &["Unschedulable", "4 without label example.com/zone"],
        },
        Case {
            what: "more hosts than racks",
            spec: |s| s["nodes"]["ControlPlane"]["count"] = json!({"active": 3, "standby": 3}),
            pool: None,
            expect: &["Unschedulable", "wanted 6, have 0, can add 4"],
        },
        Case {
            what: "service interface no host has",
            spec: |s| s["services"]["jumpHost"][0]["nodeInterfaceId"] = json!("storage-net"),
            pool: None,
            expect: &["no network with id (or link) storage-net", "jumpHost[0]"],
        },
        Case {
            what: "networkData garbage",
            spec: |_| {},
            pool: Some(|h| {
                secret_patch(
                    format!("{h}-network-data"),
                    json!({"networkData": b64("{oops: [")}),
                )
            }),
            expect: &["neither JSON nor YAML", "fix its syntax"],
        },
        Case {
            what: "BMC secret without password",
            spec: |_| {},
            pool: Some(|h| secret_patch(format!("{h}-bmc-secret"), json!({"password": null}))),
            expect: &["lacks a non-empty password"],
        },
        Case {
            what: "BMC address unparsable",
            spec: |_| {},
            pool: Some(|h| {
                (
                    format!("bmh/{h}"),
                    json!({"spec": {"bmc": {"address": "gopher://10.0.0.1"}}}),
                )
            }),
            expect: &["spec.bmc.address is not usable", "not one metal3 accepts"],
        },
        Case {
            what: "BMC credentials secret missing",
            spec: |_| {},
            pool: Some(|h| {
                (
                    format!("bmh/{h}"),
                    json!({"spec": {"bmc": {"credentialsName": "nope"}}}),
                )
            }),
            expect: &["BMC credentials Secret", "/nope not found"],
        },
        Case {
            what: "networkData secret missing",
            spec: |_| {},
            pool: Some(|h| {
                (
                    format!("bmh/{h}"),
                    json!({"spec": {"networkData": {"name": "missing-nd"}}}),
                )
            }),
            expect: &["missing-nd not found", "create it"],
        },
        Case {
            what: "networkData in another namespace",
            spec: |_| {},
            pool: Some(|h| {
                (
                    format!("bmh/{h}"),
                    json!({"spec": {"networkData": {"name": format!("{h}-network-data"), "namespace": "kube-system"}}}),
                )
            }),
            expect: &[
                "outside the host's namespace",
                "--network-data-any-namespace",
            ],
        },
        Case {
            what: "hosts without networkData",
            spec: |_| {},
            pool: Some(|h| (format!("bmh/{h}"), json!({"spec": {"networkData": null}}))),
            expect: &["Unschedulable", "4 without networkData"],
        },
    ]
}

async fn break_pool(env: &TestEnv, change: PoolChange) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    for host in CONTROL_PLANE_HOSTS {
        let (target, patch) = change(host);
        let pp = PatchParams::default();
        match target.split_once('/') {
            Some(("secret", name)) => secrets
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            Some(("bmh", name)) => hosts
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            _ => unreachable!("{target}"),
        }
        .unwrap_or_else(|e| panic!("breaking {target}: {e}"));
    }
}

/// The Ready condition's message and every Warning Event's reason and message for `name`.
async fn answers(env: &TestEnv, api: &Api<SIPCluster>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = api.get_opt(name).await.unwrap() {
        for cond in c.status.iter().flat_map(|s| s.conditions.iter()) {
            if cond.type_ == "Ready" && cond.status == "False" {
                out.push(format!("{}: {}", cond.reason, cond.message));
            }
        }
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    for e in list.items {
        if e.type_.as_deref() == Some("Warning") {
            out.push(format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            ));
        }
    }
    out
}

#[tokio::test]
async fn malformed_input_gets_a_clear_answer_and_loses_nothing() {
    for case in cases() {
        let env = test_env("badinput").await;
        load_hosts(&env).await;
        if let Some(change) = case.pool {
            break_pool(&env, change).await;
        }
        let operator = start_operator(&env);
        let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);

        let broken = sample_cluster(&env, "broken", |m| (case.spec)(&mut m["spec"]));
        api.create(&PostParams::default(), &broken).await.unwrap();
        // A healthy cluster of workers only, created after the broken one.
        let healthy = sample_cluster(&env, "healthy", |m| {
            m["spec"]["nodes"]["ControlPlane"]["count"] = json!({"active": 0, "standby": 0});
        });
        api.create(&PostParams::default(), &healthy).await.unwrap();

        let what = case.what;
        let deadline = Instant::now() + Duration::from_secs(30);
        let found = loop {
            let said = answers(&env, &api, "broken").await;
            if let Some(answer) = said
                .iter()
                .find(|a| case.expect.iter().all(|n| a.contains(n)))
            {
                break answer.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no answer containing {:?}; said: {said:#?}",
                case.expect
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            !found.contains("sample-password"),
            "{what}: a password leaked: {found}"
        );

        wait_for(
            &api,
            "healthy",
            &format!("{what}: the healthy cluster Ready"),
            |c| phase(c) == Some(Phase::Ready),
        )
        .await;
        let broken_now = api.get("broken").await.unwrap();
        assert_ne!(
            phase(Some(&broken_now)),
            Some(Phase::Ready),
            "{what}: the broken cluster must not be Ready"
        );
        // Nothing labeled for the broken cluster.
        let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
        for h in hosts.list(&ListParams::default()).await.unwrap().items {
            let owner = h
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CLUSTER_NAME));
            assert_ne!(
                owner.map(String::as_str),
                Some("broken"),
                "{what}: {:?} labeled",
                h.metadata.name
            );
        }
        api.delete("broken", &DeleteParams::default())
            .await
            .unwrap();
        wait_for(&api, "broken", &format!("{what}: broken deleted"), |c| {
            c.is_none()
        })
        .await;
        operator.abort();
    }
}

#[tokio::test]
async fn an_object_someone_else_made_under_a_services_name_is_refused_not_taken_over() {
    let env = test_env("foreign").await;
    load_hosts(&env).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    // Someone's own Secret, under the name the control-plane balancer's config would take.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "foreign-lb-control-plane"},
        "stringData": {"owner": "someone else"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let operator = start_operator(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "foreign", no_worker_balancer),
    )
    .await
    .unwrap();
    let refused = wait_for(&api, "foreign", "the foreign object refused", |c| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|r| r.message.contains("is not this SIPCluster's"))
    })
    .await
    .unwrap();
    let ready = refused
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InfraServiceFailure");
    assert!(
        ready
            .message
            .contains("Secret/foreign-lb-control-plane exists")
            && ready.message.contains("rename or delete it"),
        "{}",
        ready.message
    );
    // Untouched: no owner reference (the GC would delete it with the SIPCluster), its data.
    let after = secrets.get("foreign-lb-control-plane").await.unwrap();
    assert_eq!(after.metadata.owner_references, None);
    assert_eq!(
        after.data.unwrap()["owner"],
        ByteString(b"someone else".to_vec())
    );
    // Once it is gone, the service is deployed.
    secrets
        .delete("foreign-lb-control-plane", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "foreign", "Ready once the name is free", |c| {
        phase(c) == Some(Phase::Ready)
    })
    .await;
    operator.abort();
}

#[tokio::test]
async fn a_namespace_may_claim_only_the_hosts_the_operator_allows_it() {
    let env = test_env("scope").await;
    load_hosts(&env).await;
    // Every namespace may claim only another pool's hosts: none of this namespace's.
    let (operator, _) = crate::common::start_operator_with(&env, "scope", |settings| {
        settings.claim_scope = "*=another-pool".parse().unwrap();
    })
    .await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(
        &PostParams::default(),
        &sample_cluster(&env, "scoped", no_worker_balancer),
    )
    .await
    .unwrap();
    let seen = wait_for(&api, "scoped", "unschedulable for its scope", |c| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|r| r.message.contains("--claimable-hosts"))
    })
    .await
    .unwrap();
    let message = &seen.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("in namespaces this SIPCluster's may not claim from"),
        "{message}"
    );
    // Nothing was claimed.
    let hosts: Api<BareMetalHost> = Api::namespaced(env.client.clone(), &env.namespace);
    for host in hosts.list(&ListParams::default()).await.unwrap() {
        assert!(
            !kube::ResourceExt::labels(&host).contains_key(LABEL_CLUSTER_NAME),
            "{} was labeled",
            kube::ResourceExt::name_any(&host)
        );
    }
    operator.abort();
}

/// Without the worker balancer, which would take a block of the shared control plane's small
/// static node-port band.
fn no_worker_balancer(m: &mut Value) {
    m["spec"]["services"]
        .as_object_mut()
        .unwrap()
        .remove("loadBalancerWorker");
}

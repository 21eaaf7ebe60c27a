//! Secrets stay secret as users run sip: a `sip run` process logging JSON at debug level (the
//! most its filter lets a user ask for) serves a cluster with every service that carries
//! secrets (the jump host's BMC credentials, Dex's client secret and LDAP bind password); a BMC
//! password is rotated and rendered again; the cluster is deleted. No secret appears, in any
//! encoding (`common::encodings`), in its log, the status, Events, ConfigMaps,
//! `kubectl describe` or /metrics.

use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster};

use crate::common::{
    assert_no_secret_in, load_hosts, phase, poke, sample_cluster, test_env, wait_for,
};
use crate::services::{DEX_CLIENTS, DEX_CONFIG, create_secret};

const SECRETS: [&str; 4] = [
    "sample-password-",
    "rotated-bmc-password",
    "oidc-client-secret-value",
    "ldap-bind-password-value",
];

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn a_running_operator_writes_no_secret_anywhere_in_any_encoding() {
    let env = test_env("secrecy").await;
    let ns = env.namespace.clone();
    load_hosts(&env).await;
    create_secret(&env, "dex-tls", &[("tls.crt", "CERT"), ("tls.key", "KEY")]).await;
    create_secret(
        &env,
        "dex",
        &[("connectors", DEX_CONFIG), ("staticClients", DEX_CLIENTS)],
    )
    .await;

    let log_path = std::env::temp_dir().join(format!("sip-{ns}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let address = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let operator = Kill(
        Command::new(env!("CARGO_BIN_EXE_sip"))
            .args(["run", "--kubeconfig"])
            .arg(&env.cp.kubeconfig)
            .args(["--host-namespace", &ns, "--cluster-namespace", &ns])
            .args(["--log-format", "json", "--log", "debug"])
            .args(["--metrics-address", &address])
            .args(["--lease-namespace", &ns, "--instance", "secrecy"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sip run"),
    );

    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &ns);
    // No worker balancer: the shared control plane's static node-port band is for tests that
    // need one.
    let cluster = sample_cluster(&env, "tenant", |m| {
        let services = m["spec"]["services"].as_object_mut().unwrap();
        services.remove("loadBalancerWorker");
        services.insert(
            "auth".into(),
            json!([{
                "issuer": "https://dex.tenant.example:5556",
                "configSecret": "dex",
                "tlsSecret": "dex-tls",
                "storage": "kubernetes",
            }]),
        );
    });
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let ready = wait_for(&api, "tenant", "Ready", |c| phase(c) == Some(Phase::Ready))
        .await
        .unwrap();

    // A member's BMC password rotated, and the cluster poked as the README says (Secrets are
    // not watched): the jump host's list is rendered again with it.
    let status = ready.status.clone().unwrap();
    let member = &status.hosts[0].name;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let rotated = format!("rotated-bmc-password-{member}");
    secrets
        .patch(
            &format!("{member}-bmc-secret"),
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": rotated}})),
        )
        .await
        .unwrap();
    poke(&api, "tenant", "rotated").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let jump = secrets.get("tenant-jump-host").await.unwrap();
        let hosts = jump.data.unwrap_or_default().remove("hosts.json");
        if hosts.is_some_and(|h| String::from_utf8_lossy(&h.0).contains(&rotated)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated password never reached the jump host"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    let described = env.kubectl(&["describe", "sip", "tenant", "-n", &ns]);
    let status = serde_json::to_string(&api.get("tenant").await.unwrap().status).unwrap();
    let metrics = http_get(&address, "/metrics").await;
    assert!(metrics.contains("sip_phase_transitions_total"), "{metrics}");
    api.delete("tenant", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "tenant", "gone", |c| c.is_none()).await;
    let events = Api::<Event>::namespaced(env.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let config_maps = Api::<ConfigMap>::namespaced(env.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    drop(operator);
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);

    // The search looks where the operator spoke: JSON, at debug, about this cluster's secrets.
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "debug lines logged"
    );
    assert!(
        logged.contains("tenant-jump-host") && logged.contains(&ns),
        "the log tells of this cluster's services"
    );
    assert!(events.items.len() >= 5, "{} Events", events.items.len());
    assert_no_secret_in(
        &[
            ("the JSON log", logged),
            ("the status", status),
            ("kubectl describe", described),
            ("/metrics", metrics),
            ("Events", serde_json::to_string(&events.items).unwrap()),
            (
                "ConfigMaps",
                serde_json::to_string(&config_maps.items).unwrap(),
            ),
        ],
        &SECRETS,
    );
}

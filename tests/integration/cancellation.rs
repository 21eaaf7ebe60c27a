//! No cancelled turn can share a host. Five clusters contend for four control-plane hosts
//! while the operator's turns are cancelled right after every other write at one site (status,
//! labels, applies, deletes; eight times, then they may finish), as its time limit cancels a turn stuck on the network; then two
//! of them are deleted and the one left waiting takes a freed host. A checker reads everything
//! every 50 ms: no host is ever in two clusters' ledgers, labeled for one while in another's
//! ledger, in two jump hosts' host lists or in two control-plane balancers' backends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sip::api::{BareMetalHost, LABEL_CLUSTER_NAME, Phase, SIPCluster};
use sip::failpoint::{Cancel, Site};

use crate::common::{TestEnv, load_hosts, phase, sample_cluster, start_operator_with, test_env};

/// One reading of everything that could put a host in two clusters; the breaches it shows.
async fn breaches(env: &TestEnv) -> Vec<String> {
    let clusters = Api::<SIPCluster>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    let hosts = Api::<BareMetalHost>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=sip-operator"))
        .await
        .unwrap();
    let mut found = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for c in &clusters {
        for r in c
            .status
            .iter()
            .flat_map(|s| &s.hosts)
            .filter(|r| r.state.claims())
        {
            if let Some(other) = claimed.insert(r.name.clone(), c.name_any()) {
                found.push(format!(
                    "{} in the ledgers of {other} and {}",
                    r.name,
                    c.name_any()
                ));
            }
        }
    }
    for h in &hosts {
        if let (Some(label), Some(ledger)) = (
            h.labels().get(LABEL_CLUSTER_NAME),
            claimed.get(&h.name_any()),
        ) && label != ledger
        {
            found.push(format!(
                "{} labeled for {label}, in the ledger of {ledger}",
                h.name_any()
            ));
        }
    }
    let mut served: BTreeMap<String, String> = BTreeMap::new();
    for s in &secrets {
        let name = s.name_any();
        let data = s.data.clone().unwrap_or_default();
        let mut entries: Vec<String> = Vec::new();
        if let Some(list) = data.get("hosts.json") {
            let list: serde_json::Value = serde_json::from_slice(&list.0).unwrap();
            entries.extend(
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["name"].as_str().map(|n| format!("host {n}"))),
            );
        }
        if let Some(config) = data.get("haproxy.cfg") {
            let config = String::from_utf8_lossy(&config.0);
            entries.extend(
                config
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("server "))
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .map(|address| format!("backend {address}")),
            );
        }
        let cluster = s.labels().get(LABEL_CLUSTER_NAME).cloned().unwrap_or(name);
        for entry in entries {
            if let Some(other) = served.insert(entry.clone(), cluster.clone())
                && other != cluster
            {
                found.push(format!("{entry} rendered for {other} and {cluster}"));
            }
        }
    }
    found
}

/// The operator on `env`'s namespace with `cancel` set, turns limited to a second, and the
/// ledgers' watch `lag` behind.
async fn cancelling_operator(
    env: &TestEnv,
    cancel: &Arc<Cancel>,
    lag: Duration,
) -> tokio::task::JoinHandle<()> {
    let (operator, _) = start_operator_with(env, "cancel", |settings| {
        settings.cancel = Some(cancel.clone());
        settings.turn_limit = Duration::from_secs(1);
        settings.ledger_lag = Some(lag);
    })
    .await;
    operator
}

/// A cluster of one control-plane and one worker host with a jump host and a control-plane
/// balancer, its node keys in Secret `keys`.
fn small(env: &TestEnv, name: &str, keys: &str) -> SIPCluster {
    sample_cluster(env, name, |m| {
        for role in ["ControlPlane", "Worker"] {
            m["spec"]["nodes"][role]["count"] = serde_json::json!({"active": 1, "standby": 0});
        }
        // No worker balancer: the shared control plane's static node-port band is small.
        let services = m["spec"]["services"].as_object_mut().unwrap();
        services.remove("auth");
        services.remove("loadBalancerWorker");
        services["jumpHost"][0]["nodeSSHPrivateKeys"] = serde_json::json!(keys);
    })
}

async fn contend(site: Site) {
    let env = test_env(&format!("cancel-{}", format!("{site:?}").to_lowercase())).await;
    load_hosts(&env).await;
    // Every other write at the site, eight times: each lands in a different turn.
    let cancel = Arc::new(Cancel::new(site, 2, 8));
    // The ledgers' watch three seconds behind: a turn cancelled after its status write is
    // over before the watch shows that write, so only the outstanding mark tells.
    let operator = cancelling_operator(&env, &cancel, Duration::from_secs(3)).await;

    let done = Arc::new(AtomicBool::new(false));
    let checker = tokio::spawn({
        let (env, done) = (env.clone(), done.clone());
        async move {
            let (mut readings, mut all) = (0, Vec::new());
            while !done.load(Ordering::Relaxed) {
                all.extend(breaches(&env).await);
                readings += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (readings, all)
        }
    });

    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let names: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    for name in &names {
        let cluster = small(&env, name, "ssh-private-keys");
        api.create(&PostParams::default(), &cluster).await.unwrap();
    }
    let ready = |clusters: &[SIPCluster]| {
        clusters
            .iter()
            .filter(|c| phase(Some(c)) == Some(Phase::Ready))
            .map(|c| c.name_any())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let listed = api.list(&ListParams::default()).await.unwrap().items;
        let now = ready(&listed);
        if now.len() == 4 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "four of five never became Ready: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waiting = names.iter().find(|n| !first.contains(n)).unwrap().clone();
    // Two go; the one waiting takes a host they free.
    for name in &first[..2] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = api.list(&ListParams::default()).await.unwrap().items;
        let gone = first[..2]
            .iter()
            .all(|n| listed.iter().all(|c| c.name_any() != *n));
        if gone && ready(&listed).contains(&waiting) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} never took a freed host"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    let (readings, found) = checker.await.unwrap();
    operator.abort();
    eprintln!(
        "{site:?}: {} turns cancelled after their write, {readings} readings",
        cancel.cancelled()
    );
    assert!(cancel.cancelled() > 0, "{site:?}: no turn was cancelled");
    assert!(readings >= 20, "the checker read {readings} times");
    assert!(
        found.is_empty(),
        "{site:?}: a host in two clusters: {found:?}"
    );
}

#[tokio::test]
async fn no_turn_cancelled_after_its_status_write_shares_a_host() {
    contend(Site::Status).await;
}

#[tokio::test]
async fn no_turn_cancelled_after_a_label_patch_shares_a_host() {
    contend(Site::Labels).await;
}

#[tokio::test]
async fn no_turn_cancelled_after_an_apply_shares_a_host() {
    contend(Site::Apply).await;
}

#[tokio::test]
async fn no_turn_cancelled_after_a_delete_shares_a_host() {
    contend(Site::Delete).await;
}

/// The window itself: the ledgers' watch five seconds behind; the first cluster's turn
/// cancelled right after the status write that claims its hosts, and that cluster then held
/// before Labeling (its jump host names a Secret that does not exist), so no label of its
/// tells; a second cluster, created with it, choosing from the same pool within those five
/// seconds. Only the mark set before the write was sent tells it the cache lacks a claim.
#[tokio::test]
async fn a_claim_whose_turn_was_cancelled_is_seen_by_the_next_choice() {
    let env = test_env("cancel-window").await;
    load_hosts(&env).await;
    let cancel = Arc::new(Cancel::new(Site::Status, 1, 1));
    let operator = cancelling_operator(&env, &cancel, Duration::from_secs(5)).await;
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    // Settle the watch first: nothing of the operator's is outstanding when c0 writes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    // c0's turn writes its claims and is cancelled; c1 comes while it waits to be dropped.
    api.create(&PostParams::default(), &small(&env, "c0", "missing-keys"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cancel.cancelled() == 0 {
        assert!(Instant::now() < deadline, "c0's status write never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.create(
        &PostParams::default(),
        &small(&env, "c1", "ssh-private-keys"),
    )
    .await
    .unwrap();
    // c1 Ready, c0 held on its missing Secret; read all the while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = Vec::new();
    loop {
        found.extend(breaches(&env).await);
        let c0 = api.get("c0").await.unwrap();
        let c1 = api.get("c1").await.unwrap();
        let c0_blocked = c0
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|r| r.reason == "InfraServiceFailure");
        if c0_blocked && phase(Some(&c1)) == Some(Phase::Ready) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c1 never became Ready beside a held c0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator.abort();
    assert_eq!(cancel.cancelled(), 1);
    assert!(found.is_empty(), "a host in two clusters: {found:?}");
}

//! A live checker of the invariant sip exists for: no host belongs to two SIPClusters. It
//! watches the ledgers (every SIPCluster), the hosts' labels and the services' rendered Secrets
//! (the load balancers' `haproxy.cfg`, the jump host's `hosts.json`), and asserts at every
//! event: no host in two ledgers, no host rendered into two clusters' services, and each host's
//! labels going only none -> X -> none. A watch that fails is a violation, not an end; and
//! [`Checker::finish`] fails when a watch saw nothing.
//!
//! Where operators share a pool ([`Checker::shared`]), a claim just made (`Chosen`) is a
//! proposal until it is confirmed: two operators' proposals may meet for a moment, and the
//! later yields before anything outside its ledger names the host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::watcher;
use sip::api::{BareMetalHost, HostState, LABEL_CLUSTER_NAME, LABEL_CLUSTER_NAMESPACE, SIPCluster};

#[derive(Default)]
struct State {
    /// cluster -> hosts its ledger claims (with the proposals, unless they may race).
    ledgers: BTreeMap<String, BTreeSet<String>>,
    /// Proposals (`Chosen` records) of operators sharing a pool are not claims yet.
    proposals_race: bool,
    /// host -> the cluster its labels give it to.
    labels: BTreeMap<String, Option<String>>,
    /// (cluster, secret) -> hosts named in the rendered services.
    rendered: BTreeMap<(String, String), BTreeSet<String>>,
    /// Events seen per watch.
    seen: BTreeMap<&'static str, usize>,
    violations: BTreeSet<String>,
}

impl State {
    fn owners<'a>(
        &self,
        sets: impl Iterator<Item = (&'a String, &'a BTreeSet<String>)>,
        what: &str,
    ) -> Vec<String> {
        let mut owner: BTreeMap<&String, &String> = BTreeMap::new();
        let mut found = Vec::new();
        for (cluster, hosts) in sets {
            for h in hosts {
                if let Some(other) = owner.insert(h, cluster)
                    && other != cluster
                {
                    found.push(format!("{h} in the {what} of {other} and {cluster}"));
                }
            }
        }
        found
    }

    fn check(&mut self) {
        let mut found = self.owners(self.ledgers.iter(), "ledgers");
        found.extend(
            self.owners(
                self.rendered
                    .iter()
                    .map(|((cluster, _), hosts)| (cluster, hosts)),
                "rendered services",
            ),
        );
        self.violations.extend(found);
    }

    fn label(&mut self, host: String, now: Option<String>) {
        let before = self.labels.insert(host.clone(), now.clone()).flatten();
        if let (Some(b), Some(n)) = (&before, &now)
            && b != n
        {
            self.violations.insert(format!(
                "{host} relabeled from {b} to {n} without being freed"
            ));
        }
    }
}

/// The pool's host names a rendered text names: `server <host> ` lines and `"name": "<host>"`.
fn named_hosts(text: &str, pool: &BTreeSet<String>) -> BTreeSet<String> {
    pool.iter()
        .filter(|h| {
            text.contains(&format!("server {h} ")) || text.contains(&format!("\"name\": \"{h}\""))
        })
        .cloned()
        .collect()
}

fn cluster_of(namespace: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        namespace.map_or("", String::as_str),
        name.map_or("", String::as_str)
    )
}

pub struct Checker {
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Checker {
    /// Watches every SIPCluster, the hosts of `host_namespace` (named in `pool`), and the
    /// Secrets of `cluster_namespaces`.
    pub fn start(
        client: &kube::Client,
        host_namespace: &str,
        pool: BTreeSet<String>,
        cluster_namespaces: &[String],
    ) -> Self {
        Self::watching(client, host_namespace, pool, cluster_namespaces, false)
    }

    /// [`Checker::start`] where several operators choose from the pool: a host's proposals
    /// (`Chosen` records) may meet; its confirmed claims, labels and rendered services not.
    pub fn shared(
        client: &kube::Client,
        host_namespace: &str,
        pool: BTreeSet<String>,
        cluster_namespaces: &[String],
    ) -> Self {
        Self::watching(client, host_namespace, pool, cluster_namespaces, true)
    }

    fn watching(
        client: &kube::Client,
        host_namespace: &str,
        pool: BTreeSet<String>,
        cluster_namespaces: &[String],
        proposals_race: bool,
    ) -> Self {
        let state = Arc::new(Mutex::new(State {
            proposals_race,
            ..State::default()
        }));
        // Every SIPCluster's ledger, as a claim on this pool counts wherever its cluster is;
        // only records of this pool's hosts (other tests share the control plane).
        let pool_namespace = host_namespace.to_string();
        let mut tasks = vec![
            watch(
                &state,
                "SIPClusters",
                Api::<SIPCluster>::all(client.clone()),
                move |s, c: SIPCluster| {
                    let key = cluster_of(c.metadata.namespace.as_ref(), c.metadata.name.as_ref());
                    let proposals_race = s.proposals_race;
                    let claims = c
                        .status
                        .iter()
                        .flat_map(|st| &st.hosts)
                        .filter(|r| r.state.claims() && r.namespace == pool_namespace)
                        .filter(|r| !(proposals_race && r.state == HostState::Chosen))
                        .map(|r| r.name.clone())
                        .collect();
                    s.ledgers.insert(key, claims);
                },
                |s, c: SIPCluster| {
                    let key = cluster_of(c.metadata.namespace.as_ref(), c.metadata.name.as_ref());
                    s.ledgers.remove(&key);
                },
            ),
            watch(
                &state,
                "BareMetalHosts",
                Api::<BareMetalHost>::namespaced(client.clone(), host_namespace),
                |s, h: BareMetalHost| {
                    let labels = h.metadata.labels.unwrap_or_default();
                    let owner = labels
                        .get(LABEL_CLUSTER_NAME)
                        .map(|name| cluster_of(labels.get(LABEL_CLUSTER_NAMESPACE), Some(name)));
                    s.label(h.metadata.name.unwrap_or_default(), owner);
                },
                |s, h: BareMetalHost| {
                    s.label(h.metadata.name.unwrap_or_default(), None);
                },
            ),
        ];
        for ns in cluster_namespaces {
            let pool = pool.clone();
            tasks.push(watch(
                &state,
                "Secrets",
                Api::<Secret>::namespaced(client.clone(), ns),
                move |s, secret: Secret| {
                    let labels = secret.metadata.labels.clone().unwrap_or_default();
                    let Some(cluster) = labels.get(LABEL_CLUSTER_NAME) else {
                        return;
                    };
                    let key = (
                        cluster_of(secret.metadata.namespace.as_ref(), Some(cluster)),
                        secret.metadata.name.clone().unwrap_or_default(),
                    );
                    let text: String = secret
                        .data
                        .iter()
                        .flatten()
                        .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
                        .collect();
                    s.rendered.insert(key, named_hosts(&text, &pool));
                },
                |s, secret: Secret| {
                    let labels = secret.metadata.labels.clone().unwrap_or_default();
                    if let Some(cluster) = labels.get(LABEL_CLUSTER_NAME) {
                        let key = (
                            cluster_of(secret.metadata.namespace.as_ref(), Some(cluster)),
                            secret.metadata.name.clone().unwrap_or_default(),
                        );
                        s.rendered.remove(&key);
                    }
                },
            ));
        }
        Checker { state, tasks }
    }

    /// Stops watching; fails on any violation, any watch error, or a watch that saw nothing.
    pub fn finish(self) {
        for t in &self.tasks {
            t.abort();
        }
        let s = self.state.lock().unwrap();
        assert!(s.violations.is_empty(), "violations: {:#?}", s.violations);
        for what in ["SIPClusters", "BareMetalHosts", "Secrets"] {
            let n = s.seen.get(what).copied().unwrap_or(0);
            assert!(
                n > 0,
                "the checker saw no event of {what}: it proves nothing"
            );
        }
        eprintln!("checker: events seen {:?}", s.seen);
    }
}

/// A task applying every event of `api` to the state with `apply` / `delete`, checking after
/// each.
fn watch<K>(
    state: &Arc<Mutex<State>>,
    what: &'static str,
    api: Api<K>,
    apply: impl Fn(&mut State, K) + Send + 'static,
    delete: impl Fn(&mut State, K) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let state = state.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let mut s = state.lock().unwrap();
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => apply(&mut s, o),
                Ok(watcher::Event::Delete(o)) => delete(&mut s, o),
                Ok(_) => {}
                Err(e) => {
                    s.violations.insert(format!("the {what} watch failed: {e}"));
                }
            }
            *s.seen.entry(what).or_default() += 1;
            s.check();
        }
        state
            .lock()
            .unwrap()
            .violations
            .insert(format!("the {what} watch ended"));
    })
}

/// Contention in rounds over the SIPClusters of `apis` (`total` of them, `fit` servable at
/// once): each round settles when `fit` of the remaining are Ready and the others wait
/// Unschedulable, saying the control plane is short; then the Ready ones are deleted and the
/// waiting must take their hosts, without a restart. `observe` sees every listing, not only
/// the settled ones. Returns the rounds that freed hosts.
pub async fn serve_in_rounds(
    apis: &[Api<SIPCluster>],
    total: usize,
    fit: usize,
    limit: std::time::Duration,
    observe: impl Fn(&[SIPCluster]),
) -> usize {
    use kube::api::{DeleteParams, ListParams};
    let deadline = std::time::Instant::now() + limit;
    let (mut remaining, mut rounds) = (total, 0);
    loop {
        let mut clusters = Vec::new();
        for api in apis {
            clusters.extend(api.list(&ListParams::default()).await.unwrap().items);
        }
        observe(&clusters);
        let ready: Vec<&SIPCluster> = clusters
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(sip::api::Phase::Ready))
            .collect();
        let blocked: Vec<String> = clusters
            .iter()
            .filter_map(|c| c.status.as_ref())
            .flat_map(|s| &s.conditions)
            .filter(|c| c.type_ == "Ready" && c.reason == "Unschedulable")
            .map(|c| c.message.clone())
            .collect();
        let fits = remaining.min(fit);
        if clusters.len() == remaining && ready.len() == fits && blocked.len() == remaining - fits {
            for why in &blocked {
                assert!(why.contains("ControlPlane: wanted 1"), "says why: {why}");
            }
            if blocked.is_empty() {
                return rounds;
            }
            for c in &ready {
                let namespace = c.metadata.namespace.as_deref().unwrap();
                Api::<SIPCluster>::namespaced(apis[0].clone().into_client(), namespace)
                    .delete(c.metadata.name.as_ref().unwrap(), &DeleteParams::default())
                    .await
                    .unwrap();
            }
            remaining -= ready.len();
            rounds += 1;
        }
        if std::time::Instant::now() >= deadline {
            // Say where each cluster stands, so a failure in CI explains itself.
            for c in &clusters {
                let status = c.status.clone().unwrap_or_default();
                let hosts: Vec<String> = status
                    .hosts
                    .iter()
                    .map(|h| format!("{} {:?}", h.name, h.state))
                    .collect();
                let told: Vec<String> = status
                    .history
                    .iter()
                    .rev()
                    .take(4)
                    .map(|h| format!("{}: {}", h.reason, h.message))
                    .collect();
                eprintln!(
                    "{}/{}: {:?}, hosts {hosts:?}, conditions {:?}, last told {told:?}",
                    c.metadata.namespace.as_deref().unwrap_or_default(),
                    c.metadata.name.as_deref().unwrap_or_default(),
                    status.phase,
                    status
                        .conditions
                        .iter()
                        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect::<Vec<_>>(),
                );
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round {rounds} did not settle: {} clusters, {} ready, {} unschedulable",
            clusters.len(),
            ready.len(),
            blocked.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

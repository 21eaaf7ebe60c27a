//! `cargo demo`: the whole story on a local control plane, from nothing but Rust and Go.
//!
//! Starts etcd and kube-apiserver (building them on first use), installs the CRDs, applies the
//! sample inventory and the sample SIPCluster (adapted from the predecessor's), runs the operator and prints the
//! transitions its status history records until Ready; then scales the workers up and down and deletes the
//! cluster, showing the host labels each time. Exits 0 when every step reached its goal.
//! `--keep` leaves the control plane running at the end until Ctrl-C.
//!
//! `--node` runs sip as its users do instead, on a one-node cluster (see `node.rs`).

mod node;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use sip::api::{Phase, SIPCluster, TransitionRecord};
use sip_envtest::{ControlPlane, apply_yaml, binaries::repo_root};

const NS: &str = "sipcluster-system";
const NAME: &str = "sipcluster-system";
/// The objects the operator deploys for the sample, found by the labels it sets.
const CHILDREN: &str =
    "app.kubernetes.io/managed-by=sip-operator,sip.airshipit.org/cluster-name=sipcluster-system";
const CHILD_KINDS: &str = "deployments,services,secrets,configmaps,serviceaccounts";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    if std::env::args().any(|a| a == "--node") {
        return node::run(keep).await;
    }

    step("starting the local control plane (etcd + kube-apiserver; the first run builds them)");
    let cp = ControlPlane::start().await?;
    println!(
        "  API server {} ready in {:.1}s, CRDs installed",
        cp.server,
        cp.startup.as_secs_f64()
    );
    let client = cp.client().await?;

    step(
        "applying manifests/samples/hosts.yaml: 10 hosts in 4 racks, their networkData and BMC secrets",
    );
    apply_file(&client, "hosts.yaml").await?;
    kubectl(&cp, &["get", "bmh", "-n", "metal3", "-L", LABELS])?;

    step("starting the operator");
    let operator = tokio::spawn(sip::controller::run(
        client.clone(),
        sip::controller::Settings::default(),
        std::future::pending(),
    ));

    step(
        "kubectl sip plan -f manifests/samples/sipcluster.yaml: what it would take, before it exists",
    );
    let sample = repo_root().join("manifests/samples/sipcluster.yaml");
    kubectl_sip(&cp, &["plan", "-f", &sample.display().to_string()], 0).await?;

    step("applying manifests/samples/sipcluster.yaml (adapted from the predecessor's sample)");
    apply_file(&client, "sipcluster.yaml").await?;
    let api: Api<SIPCluster> = Api::namespaced(client.clone(), NS);
    let seen = follow(&api, 1, Vec::new()).await?;
    kubectl(&cp, &["get", "sip", "-n", NS])?;
    kubectl(&cp, &["get", "bmh", "-n", "metal3", "-L", LABELS])?;
    step("the support services, owned by the SIPCluster (no kubelet here: no pods run)");
    kubectl(&cp, &["get", CHILD_KINDS, "-n", NS, "-l", CHILDREN])?;
    step("the control-plane load balancer's haproxy.cfg");
    kubectl(
        &cp,
        &[
            "get",
            "secret",
            "sipcluster-system-lb-control-plane",
            "-n",
            NS,
            "-o",
            "go-template={{ index .data \"haproxy.cfg\" | base64decode }}",
        ],
    )?;
    step("kubectl describe sip (the story)");
    kubectl(&cp, &["describe", "sip", NAME, "-n", NS])?;
    step("kubectl sip hosts: the inventory by flavor and rack");
    kubectl_sip(&cp, &["hosts"], 0).await?;
    step("kubectl sip why: the story on one screen");
    kubectl_sip(&cp, &["why", NAME, "-n", NS], 0).await?;

    step("kubectl sip plan: what 3 active + 1 standby workers would take");
    let more = [
        "--set",
        "Worker.count.active=3",
        "--set",
        "Worker.count.standby=1",
    ];
    kubectl_sip(&cp, &[&["plan", NAME, "-n", NS][..], &more].concat(), 0).await?;
    step(
        "kubectl sip plan: 9 active + 1 standby control-plane hosts on 4 racks cannot be had (exit 2)",
    );
    let nine = ["--set", "ControlPlane.count.active=9"];
    kubectl_sip(&cp, &[&["plan", NAME, "-n", NS][..], &nine].concat(), 2).await?;

    step("scaling workers up to 3 active + 1 standby");
    scale_workers(&api, 3, 1).await?;
    let seen = follow(&api, 2, seen).await?;
    kubectl(&cp, &["get", "bmh", "-n", "metal3", "-L", LABELS])?;

    step("scaling workers down to 1 active + 0 standby: the surplus hosts are released");
    scale_workers(&api, 1, 0).await?;
    follow(&api, 3, seen).await?;
    kubectl(&cp, &["get", "sip", "-n", NS])?;
    kubectl(&cp, &["get", "bmh", "-n", "metal3", "-L", LABELS])?;

    step("deleting the SIPCluster: its labels are removed, then the finalizer");
    api.delete(NAME, &DeleteParams::default()).await?;
    wait(
        Duration::from_secs(60),
        "the SIPCluster to be gone",
        || async { Ok(api.get_opt(NAME).await?.is_none()) },
    )
    .await?;
    kubectl(&cp, &["get", "bmh", "-n", "metal3", "-L", LABELS])?;
    let labeled = cp
        .kubectl()
        .args([
            "get",
            "bmh",
            "-n",
            "metal3",
            "-l",
            "sip.airshipit.org/cluster-name",
            "-o",
            "name",
        ])
        .output()?;
    if !labeled.stdout.is_empty() {
        bail!(
            "hosts still labeled after deletion: {}",
            String::from_utf8_lossy(&labeled.stdout)
        );
    }
    println!("  no host carries a sip.airshipit.org label any more");
    let children = cp
        .kubectl()
        .args(["get", CHILD_KINDS, "-n", NS, "-l", CHILDREN, "-o", "name"])
        .output()?;
    if !children.stdout.is_empty() {
        bail!(
            "services left after deletion: {}",
            String::from_utf8_lossy(&children.stdout)
        );
    }
    println!("  and no support service object is left");
    operator.abort();

    if keep {
        step("the control plane stays up until Ctrl-C");
        println!("  export KUBECONFIG={}", cp.kubeconfig.display());
        println!("  {} get sip,bmh -A", cp.bin_dir.join("kubectl").display());
        tokio::signal::ctrl_c().await?;
    }
    step("done");
    Ok(())
}

const LABELS: &str = "vino.airshipit.org/rack,vino.airshipit.org/host,sip.airshipit.org/cluster-name,sip.airshipit.org/node-type";

fn step(what: &str) {
    println!("\n==> {what}");
}

async fn apply_file(client: &kube::Client, file: &str) -> Result<()> {
    let yaml = std::fs::read_to_string(repo_root().join("manifests/samples").join(file))
        .with_context(|| format!("reading {file}"))?;
    apply_yaml(client, &yaml, "default").await?;
    Ok(())
}

async fn scale_workers(api: &Api<SIPCluster>, active: u32, standby: u32) -> Result<()> {
    let patch =
        json!({"spec": {"nodes": {"Worker": {"count": {"active": active, "standby": standby}}}}});
    api.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Prints each transition the status history records after `seen` (the history as it stood
/// before the change), until the cluster is Ready at `generation`; returns the history then.
/// The history, not the phase seen by polling: a turn writes the steps that only read
/// together, so a poll would skip phases the cluster went through.
async fn follow(
    api: &Api<SIPCluster>,
    generation: i64,
    mut seen: Vec<TransitionRecord>,
) -> Result<Vec<TransitionRecord>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let cluster = api.get(NAME).await?;
        let status = cluster.status.unwrap_or_default();
        for entry in unseen(&seen, &status.history) {
            let from = entry.from.map_or("created".to_string(), |p| p.to_string());
            println!(
                "  {from:>14} -> {:<15} {:<16} {}",
                entry.to.to_string(),
                entry.reason,
                entry.message
            );
        }
        seen = status.history;
        if status.phase == Some(Phase::Ready) && status.observed_generation == Some(generation) {
            println!(
                "  Ready: control plane {} workers {}",
                status.control_plane.as_deref().unwrap_or("-"),
                status.workers.as_deref().unwrap_or("-")
            );
            return Ok(seen);
        }
        if Instant::now() > deadline {
            bail!("the SIPCluster did not reach Ready for generation {generation} within 90s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The entries of `history` after those in `seen`. Found by position, not by content: two
/// records of the same step within one second are equal. The history is bounded, so its oldest
/// entries may have been dropped since: the longest tail of `seen` that `history` starts with
/// is where the new entries begin.
fn unseen<'a>(
    seen: &[TransitionRecord],
    history: &'a [TransitionRecord],
) -> &'a [TransitionRecord] {
    (0..=seen.len())
        .find(|&dropped| history.starts_with(&seen[dropped..]))
        .map_or(history, |dropped| &history[seen.len() - dropped..])
}

async fn wait<F, Fut>(limit: Duration, what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `kubectl sip args` (the plugin, run in this process), which must exit with `code`.
async fn kubectl_sip(cp: &ControlPlane, args: &[&str], code: i32) -> Result<()> {
    let kubeconfig = cp.kubeconfig.display().to_string();
    let first = ["kubectl-sip", "--kubeconfig", &kubeconfig];
    let argv = first.iter().chain(args).map(|a| a.to_string());
    let exit = sip::plugin::run(argv).await;
    anyhow::ensure!(
        exit == code,
        "kubectl sip {args:?} exited {exit}, not {code}"
    );
    Ok(())
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<()> {
    let status = cp.kubectl().args(args).status()?;
    anyhow::ensure!(status.success(), "kubectl {args:?} failed: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: &str) -> TransitionRecord {
        serde_json::from_value(json!({
            "time": "2026-12-04T00:00:00Z", "to": "Ready", "reason": reason
        }))
        .unwrap()
    }

    #[test]
    fn entries_equal_to_seen_ones_are_still_new() {
        let a = record("A");
        let seen = vec![a.clone()];
        let history = vec![a.clone(), record("B"), a.clone()];
        assert_eq!(unseen(&seen, &history), &history[1..]);
        assert!(unseen(&history, &history).is_empty());
        assert_eq!(unseen(&[], &history), &history[..]);
    }

    #[test]
    fn entries_dropped_from_the_bounded_history_are_skipped() {
        let seen = vec![record("A"), record("B"), record("C")];
        let history = vec![record("B"), record("C"), record("D")];
        assert_eq!(unseen(&seen, &history), &history[2..]);
    }
}

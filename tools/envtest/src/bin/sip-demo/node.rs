//! `cargo demo --node`: sip as its users run it. Builds the operator's image and the services'
//! images here (no Docker engine, no registry), starts a one-node cluster (kubelet, containerd,
//! kube-proxy, kube-scheduler, kube-controller-manager), deploys the operator with
//! `kubectl apply -k manifests/` exactly as shipped, applies the samples, and shows the
//! SIPCluster Ready and every pod Running. `--keep` leaves the cluster up and prints how to use
//! it and the one command that removes it.

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use sip::api::{Phase, SIPCluster};
use sip_envtest::binaries::repo_root;
use sip_envtest::node::{self, NodeCluster, images};

use super::{NAME, NS, step, wait};

pub async fn run(keep: bool) -> Result<()> {
    let begun = Instant::now();
    step(
        "building the operator as a static binary and the images it and the samples run \
         (tools/node/images.sh: Debian base, jump host, haproxy, pause, operator; cached)",
    );
    let operator = images::operator_binary()?;
    let archives = images::build(&operator)?;
    println!(
        "  images in {} ({:.0}s so far)",
        archives.display(),
        begun.elapsed().as_secs_f64()
    );
    if keep {
        sip_envtest::process::outlive_this_process();
    }

    step(
        "starting the node cluster: control plane, kube-controller-manager, kube-scheduler, kube-proxy, kubelet, containerd",
    );
    let cluster = NodeCluster::start(&archives).await?;
    kubectl(&cluster, &["get", "nodes", "-o", "wide"])?;

    step(
        "kubectl apply -k manifests/: the operator as shipped (two replicas, leader election, RBAC, NetworkPolicy, restricted Pod Security)",
    );
    cluster.deploy_operator()?;
    kubectl(
        &cluster,
        &["get", "pods,lease", "-n", "sip-system", "-o", "wide"],
    )?;

    step("kubectl apply -k tools/node/samples: the samples, on sip's default images");
    let samples = repo_root().join("tools/node/samples");
    kubectl(&cluster, &["apply", "-k", &samples.display().to_string()])?;
    let client = cluster.client().await?;
    let api: Api<SIPCluster> = Api::namespaced(client.clone(), NS);
    let became_ready = wait(
        Duration::from_secs(180),
        "the sample SIPCluster to be Ready",
        || async {
            let phase = api
                .get_opt(NAME)
                .await?
                .and_then(|c| c.status)
                .and_then(|s| s.phase);
            Ok(phase == Some(Phase::Ready))
        },
    )
    .await;
    explained(&cluster, became_ready)?;
    kubectl(&cluster, &["get", "sip", "-n", NS])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let running = wait(
        Duration::from_secs(180),
        "every service pod to be Running and ready",
        || async {
            let list = pods.list(&ListParams::default()).await?;
            Ok(list.items.len() >= 3 && list.items.iter().all(ready))
        },
    )
    .await;
    explained(&cluster, running)?;
    kubectl(&cluster, &["get", "pods", "-A", "-o", "wide"])?;
    kubectl(&cluster, &["get", "services", "-n", NS])?;
    println!(
        "\n  the operator and the sample's services run on the node; {:.0}s in all",
        begun.elapsed().as_secs_f64()
    );

    if keep {
        step("the node cluster stays up");
        println!(
            "  export KUBECONFIG={}",
            cluster.control_plane.kubeconfig.display()
        );
        println!(
            "  {} get pods -A",
            cluster.control_plane.bin_dir.join("kubectl").display()
        );
        println!(
            "  to stop it and remove all it made: {}",
            node::stop_command(&cluster.dir)
        );
        // Its processes run in sessions of their own; its stop command tears it down.
        std::mem::forget(cluster);
    } else {
        step("stopping the node cluster and removing all it made");
        drop(cluster);
    }
    step("done");
    Ok(())
}

/// `outcome`, after printing, when it is a failure, what a user would look at to learn why: the
/// SIPCluster, the events, every pod, and both operator replicas' logs (a CI log is all there is
/// once the node is gone).
fn explained(cluster: &NodeCluster, outcome: Result<()>) -> Result<()> {
    if outcome.is_err() {
        step("what the cluster says (the wait failed)");
        let looks: [&[&str]; 4] = [
            &["describe", "sip", "-n", NS],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"],
            &["get", "pods,services,baremetalhosts", "-A", "-o", "wide"],
            &[
                "logs",
                "-n",
                "sip-system",
                "-l",
                "app.kubernetes.io/name=sip-operator",
                "--prefix",
                "--tail=300",
            ],
        ];
        for args in looks {
            // Best effort: the failure being explained is what is returned.
            let _ = kubectl(cluster, args);
        }
    }
    outcome
}

/// Whether a pod is Running with every container ready.
fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c.iter().all(|c| c.ready))
}

fn kubectl(cluster: &NodeCluster, args: &[&str]) -> Result<()> {
    let status = cluster.kubectl().args(args).status()?;
    anyhow::ensure!(status.success(), "kubectl {args:?} failed: {status}");
    Ok(())
}

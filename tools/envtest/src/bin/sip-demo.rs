//! `cargo demo`: the whole story on a local control plane, from nothing but Rust and Go.
//!
//! Starts etcd and kube-apiserver (building them on first use), installs the CRDs, applies the
//! sample inventory and the predecessor's sample SIPCluster, and shows them with kubectl.
//! `--keep` leaves the control plane running until Ctrl-C and prints how to reach it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use sip_envtest::{ControlPlane, apply_yaml, binaries::repo_root};

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

    step("starting the local control plane (etcd + kube-apiserver; the first run builds them)");
    let cp = ControlPlane::start().await?;
    println!(
        "  API server {} ready in {:.1}s, CRDs installed",
        cp.server,
        cp.startup.as_secs_f64()
    );
    let client = cp.client().await?;

    let samples = repo_root().join("manifests/samples");
    for file in ["hosts.yaml", "sipcluster.yaml"] {
        step(&format!("applying manifests/samples/{file}"));
        let yaml = std::fs::read_to_string(samples.join(file))
            .with_context(|| format!("reading {file}"))?;
        let applied = apply_yaml(&client, &yaml, "default").await?;
        for obj in applied {
            let kind = obj.types.as_ref().map_or("?", |t| t.kind.as_str());
            if kind != "Secret" {
                println!(
                    "  {kind} {}/{}",
                    obj.metadata.namespace.unwrap_or_default(),
                    obj.metadata.name.unwrap_or_default()
                );
            }
        }
    }

    step("kubectl get baremetalhosts -n metal3 -L flavor,rack,host");
    kubectl(
        &cp,
        &[
            "get",
            "baremetalhosts",
            "-n",
            "metal3",
            "-L",
            "vino.airshipit.org/flavor,vino.airshipit.org/rack,vino.airshipit.org/host",
        ],
    )?;
    step("kubectl get sipclusters -A");
    kubectl(&cp, &["get", "sipclusters", "-A"])?;

    if keep {
        step("the control plane stays up until Ctrl-C");
        println!("  export KUBECONFIG={}", cp.kubeconfig.display());
        println!("  {} get sip -A", cp.bin_dir.join("kubectl").display());
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<()> {
    let status = cp.kubectl().args(args).status()?;
    anyhow::ensure!(status.success(), "kubectl {args:?} failed: {status}");
    Ok(())
}

//! The images the node runs, built here without a Docker engine or a registry: the operator's
//! static binary (a glibc static-pie, as no musl toolchain can be had here), then
//! `tools/node/images.sh` for the images themselves.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::binaries::repo_root;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the operator as a static binary (profile `node-image`) and returns its path. Its own
/// target directory keeps it clear of the cargo that may be running the caller.
pub fn operator_binary() -> Result<PathBuf> {
    let root = repo_root();
    let target_dir = root.join("target/node-image");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            "node-image",
            "--bin",
            "sip",
        ])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .stdin(Stdio::null())
        .status()
        .context("running cargo build for the operator image")?;
    if !status.success() {
        bail!("building the static operator binary failed ({status})");
    }
    Ok(target_dir.join(TARGET).join("node-image/sip"))
}

/// Builds (or finds in the cache) every image the node runs and returns the directory of their
/// archives.
pub fn build(operator: &std::path::Path) -> Result<PathBuf> {
    let script = repo_root().join("tools/node/images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(operator)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}): see above", script.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

//! Where etcd, kube-apiserver and kubectl come from: `KUBEBUILDER_ASSETS` when it holds them,
//! else the pinned Go module in `tools/control-plane`, built once and cached by its own script.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The repository's root, where `crd/`, `manifests/` and `tools/` live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory holding the control-plane binaries, building them first if needed.
pub fn control_plane_bin_dir() -> Result<PathBuf> {
    let script = repo_root().join("tools/control-plane/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): see its output above; it needs Go to build the control plane",
            script.display(),
            output.status
        );
    }
    let dir = String::from_utf8(output.stdout).context("build.sh printed a non-UTF-8 path")?;
    Ok(PathBuf::from(dir.trim()))
}

/// A binary from the control-plane directory. kubectl may be missing from `KUBEBUILDER_ASSETS`
/// (envtest ships it, other layouts may not): then the built one is used.
pub fn tool(bin_dir: &Path, name: &str) -> Result<PathBuf> {
    let path = bin_dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "{name} not found in {}: unset KUBEBUILDER_ASSETS to build it from tools/control-plane",
        bin_dir.display()
    )
}

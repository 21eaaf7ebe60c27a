//! The images the node runs, built here without a Docker engine or a registry: the operator's
//! static binary (tools/image/static-build.sh), then tools/node/images.sh for the images.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::binaries::repo_root;

/// Builds the operator as a static binary (tools/image/static-build.sh, profile `node-image`:
/// unoptimized like the tests' own binary, without debuginfo) and returns its path.
pub fn operator_binary() -> Result<PathBuf> {
    let script = repo_root().join("tools/image/static-build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("node-image")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}): see above", script.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
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

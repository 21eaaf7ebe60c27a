//! The images the node runs, built here without a Docker engine or a registry: the operator's
//! static binary (tools/image/static-build.sh), then tools/node/images.sh for the images.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::binaries::repo_root;

/// Builds the operator as a static binary (tools/image/static-build.sh, profile `node-image`:
/// unoptimized like the tests' own binary, without debuginfo) and returns its path.
pub fn operator_binary() -> Result<PathBuf> {
    path_from("tools/image/static-build.sh", "node-image")
}

/// Builds (or finds in the cache) every image the node runs and returns the directory of their
/// archives.
pub fn build(operator: &std::path::Path) -> Result<PathBuf> {
    path_from(
        "tools/node/images.sh",
        operator.to_str().context("a UTF-8 path")?,
    )
}

/// Runs a script of the repository with `arg`, its progress shown, and returns the path it
/// prints.
fn path_from(script: &str, arg: &str) -> Result<PathBuf> {
    let script = repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}): see above", script.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

//! What the node cluster changes on the host, and how it is undone: its bridge and route, its
//! cgroups, the check that no other Kubernetes node's chains are there, the teardown script,
//! and the guard that runs it when the starting process dies.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{BRIDGE, CGROUP, NODE_IP, POD_CIDR, RUN_DIR, SERVICE_CIDR};
use crate::binaries::repo_root;

/// Runs tools/node/down.sh on `dir`.
pub(super) fn down(dir: &Path) -> Result<()> {
    let script = repo_root().join("tools/node/down.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", script.display(), dir.display());
    }
    Ok(())
}

/// A process that runs down.sh once the process that started the cluster is gone, whatever
/// the way it went (a panic in a test binary never drops a static, SIGKILL drops nothing),
/// holding the lock meanwhile so no new cluster starts under its feet. Its command line does
/// not name the directory with a trailing slash, so down.sh spares it.
pub(super) fn spawn_guard(dir: &Path) -> Result<Child> {
    let script = repo_root().join("tools/node/down.sh");
    let log = File::create(Path::new(RUN_DIR).join("guard.log"))?;
    Command::new("setsid")
        .args(["bash", "-c"])
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
             exec flock \"$2\" bash \"$3\" \"$4\"",
        )
        .arg("sip-node-guard")
        .arg(std::process::id().to_string())
        .arg(Path::new(RUN_DIR).join("lock"))
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the node cluster's teardown guard")
}

/// The bridge with the node's address, the Services' range routed to it (so the host reaches
/// cluster IPs from the node's address, and nothing sent to that range leaves the machine), and
/// forwarding on (pods reach Services through the node).
pub(super) fn make_bridge() -> Result<()> {
    let prefix = POD_CIDR.split_once('/').map_or("24", |(_, p)| p);
    for args in [
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["addr", "add", &format!("{NODE_IP}/{prefix}"), "dev", BRIDGE],
        vec!["link", "set", BRIDGE, "up"],
        vec!["route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP],
    ] {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .context("running ip (iproute2)")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    Ok(())
}

/// The node's cgroup in every hierarchy (the kubelet wants its cgroupRoot to exist).
pub(super) fn make_cgroups() -> Result<()> {
    for entry in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        let path = entry.path();
        if path.join("cgroup.procs").exists() {
            std::fs::create_dir_all(path.join(CGROUP))?;
        }
    }
    Ok(())
}

/// The teardown removes every KUBE-* and CNI-* chain: where some exist before the node starts,
/// another Kubernetes node runs on this machine, and the node cluster will not start beside it.
pub(super) fn refuse_foreign_chains() -> Result<()> {
    for table in ["filter", "nat", "mangle"] {
        let out = Command::new("iptables")
            .args(["-t", table, "-S"])
            .output()
            .context("running iptables")?;
        let rules = String::from_utf8_lossy(&out.stdout);
        if let Some(chain) = rules
            .lines()
            .find(|l| l.starts_with("-N KUBE-") || l.starts_with("-N CNI-"))
        {
            bail!(
                "iptables table {table} already has {chain}: another Kubernetes node seems to run \
                 on this machine, and the node cluster's teardown would remove its chains"
            );
        }
    }
    Ok(())
}

//! Child processes that cannot outlive the process that started them.
//!
//! Each binary runs under a small bash supervisor that polls the parent's PID: when the test
//! binary exits for any reason (end of suite, panic, SIGKILL), the supervisor kills the child and
//! removes its scratch directory. Statics are never dropped in Rust, so a shared control plane
//! would otherwise leak its processes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

const SUPERVISOR: &str = r#"
parent=$1; cleanup=$2; shift 2
# No parent to watch: the child runs until it is stopped (`cargo demo --node --keep`).
[ -z "$parent" ] && { "$@"; exit; }
"$@" &
child=$!
stop() {
  kill "$child" 2>/dev/null
  # Test data is throwaway: a child still shutting down after 3s (kube-apiserver waiting for
  # an etcd that is gone) is killed outright.
  for _ in 1 2 3 4 5 6; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  [ -n "$cleanup" ] && rm -rf "$cleanup"
  exit 0
}
trap stop TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do
  sleep 0.5 & wait $!
done
stop
"#;

static OUTLIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, processes started here outlive this process (in sessions of their own): for a
/// cluster left running on purpose, which its own teardown stops.
pub fn outlive_this_process() {
    OUTLIVE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`outlive_this_process`] was called.
pub fn outliving() -> bool {
    OUTLIVE.load(std::sync::atomic::Ordering::Relaxed)
}

pub struct Supervised {
    pub name: String,
    pub log: PathBuf,
    supervisor: Child,
}

impl Supervised {
    /// Starts `program args` with stdout and stderr in `log`. `cleanup`, if set, is removed
    /// once the child has stopped.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        cleanup: Option<&Path>,
    ) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = if outliving() {
            let mut c = Command::new("setsid");
            c.arg("bash");
            c
        } else {
            Command::new("bash")
        };
        let parent = if outliving() {
            String::new()
        } else {
            std::process::id().to_string()
        };
        let supervisor = command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sip-envtest-supervisor")
            .arg(parent)
            .arg(cleanup.map(|p| p.display().to_string()).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Supervised {
            name: name.to_string(),
            log,
            supervisor,
        })
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.supervisor.try_wait(), Ok(None))
    }

    /// The child's process id: the supervisor's one child that is not its polling `sleep` (so
    /// none for a child that is itself `sleep`, as the scratch directory's holder is).
    pub fn child_pid(&self) -> Option<u32> {
        let id = self.supervisor.id();
        let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
                comm.trim() != "sleep"
            })
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the child and waits for it.
    pub fn stop(&mut self) {
        if self.is_running() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.supervisor.id().to_string())
                .status();
        }
        let _ = self.supervisor.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

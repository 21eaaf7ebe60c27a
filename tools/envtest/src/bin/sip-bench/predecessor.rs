//! The Go predecessor (airshipit/sip), built by the script beside its source
//! (`../shared/predecessor/build.sh`) and run as a child process, so it is measured in the same
//! run as sip, on this machine, never quoted from another run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// What the build script printed: the binary, its CRDs, its HAProxy templates.
pub struct Build {
    pub bin: PathBuf,
    pub crds: PathBuf,
    pub templates: PathBuf,
}

/// Builds the predecessor from `source` (its tarball and `build.sh`) into a cache directory
/// named for the tarball; Go's own caches make a second build take seconds.
pub fn build(source: &Path) -> Result<Build> {
    let script = source.join("build.sh");
    ensure!(
        script.exists(),
        "{} missing: the predecessor's source and build script (../shared/predecessor beside the \
         repository, or --predecessor DIR)",
        script.display()
    );
    let tarball = std::fs::read_dir(source)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".tar.gz"))
        .with_context(|| format!("no source tarball in {}", source.display()))?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let out = PathBuf::from(home)
        .join(".cache/sip-predecessor")
        .join(tarball.trim_end_matches(".tar.gz"));
    let started = std::time::Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .context("running the predecessor's build script")?;
    ensure!(
        output.status.success(),
        "building the predecessor failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exports = stdout
        .lines()
        .find_map(|l| l.strip_prefix("export "))
        .context("the build script printed no exports")?;
    let var = |name: &str| {
        exports
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
            .with_context(|| format!("the build script printed no {name}"))
    };
    let build = Build {
        bin: var("PRED")?,
        crds: var("PRED_CRDS")?,
        templates: var("PRED_TEMPLATES")?,
    };
    println!(
        "predecessor built in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        build.bin.display()
    );
    Ok(build)
}

/// The predecessor's manager, running against one control plane.
pub struct Running {
    child: Child,
    pub metrics: SocketAddr,
}

impl Running {
    /// Starts it and waits until its caches have synced (it logs "Starting workers").
    pub fn start(build: &Build, kubeconfig: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut child = Command::new(&build.bin)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--metrics-addr={metrics}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", build.bin.display()))?;
        let stderr = child.stderr.take().context("its stderr")?;
        let (started, workers) = mpsc::channel();
        let echo = std::env::var_os("SIP_BENCH_OPERATOR_LOG").is_some();
        // Read to the end, so a full pipe never stalls it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Starting workers") {
                    let _ = started.send(());
                }
                if echo {
                    eprintln!("predecessor: {line}");
                }
            }
        });
        let running = Running { child, metrics };
        if workers.recv_timeout(Duration::from_secs(120)).is_err() {
            bail!("the predecessor did not start its workers within 2 minutes");
        }
        Ok(running)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

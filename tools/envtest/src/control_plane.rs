//! etcd + kube-apiserver on loopback ports, with the project's CRDs installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

use crate::binaries;
use crate::pki::Pki;
use crate::process::Supervised;

const FIELD_MANAGER: &str = "sip-envtest";
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// Where a control plane listens and what it serves.
pub struct Layout {
    /// The address kube-apiserver binds to and advertises (the `kubernetes` Service's endpoint).
    pub address: String,
    pub service_cidr: String,
    pub node_port_range: String,
    /// A node joins: the Node authorizer, and a client certificate to reach kubelets with.
    pub node: bool,
    /// Where its directory goes (a temporary directory by default).
    pub parent_dir: Option<PathBuf>,
    /// The CRDs installed at the start: a directory relative to the repository (`crd/`), or
    /// absolute (the predecessor's, for side-by-side measurements).
    pub crds: PathBuf,
}

impl Default for Layout {
    /// Loopback, for the tests and the demo: no node joins.
    fn default() -> Self {
        Layout {
            address: "127.0.0.1".into(),
            service_cidr: "10.96.0.0/16".into(),
            // 4,096 node ports, so the band kube-apiserver keeps for ports a client names (the
            // lowest 128: 30000-30127) is as large as it gets; ports it picks itself come from
            // above it, so tests that name ports there never collide with Services whose ports
            // the API server chose (KEP-3668).
            node_port_range: "30000-34095".into(),
            node: false,
            parent_dir: None,
            crds: "crd".into(),
        }
    }
}

/// A running control plane. Dropping it stops the processes and removes its directory.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin_dir: PathBuf,
    /// How long the start took, binaries already built.
    pub startup: Duration,
    processes: Vec<Supervised>,
    /// How kube-apiserver was started, to start it again.
    api_server: (PathBuf, Vec<String>),
    /// How etcd was started, likewise.
    etcd: (PathBuf, Vec<String>),
    pub(crate) pki: Pki,
    /// With [`Layout::node`]: the kubelet's token (user `system:node:<NODE_NAME>`).
    pub(crate) node_token: Option<String>,
}

impl ControlPlane {
    /// One control plane per test binary, started on first use. Each caller must still create
    /// its own `kube::Client` (see [`ControlPlane::client`]): clients are tied to the tokio
    /// runtime that made them, and every `#[tokio::test]` has its own.
    pub fn shared() -> &'static ControlPlane {
        // A failed start is remembered: every test then fails with the same message at once
        // instead of each one trying again.
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            // A runtime of its own on a thread of its own: the caller may be inside a runtime.
            std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the control plane start");
                rt.block_on(ControlPlane::start())
            })
            .join()
            .map_err(|_| "the control plane start panicked".to_string())
            .and_then(|r| r.map_err(|e| format!("{e:#}")))
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("cannot start the local control plane: {e}"),
        }
    }

    /// Starts etcd and kube-apiserver on loopback, writes a kubeconfig and installs the CRDs
    /// under `crd/`.
    pub async fn start() -> Result<ControlPlane> {
        ControlPlane::start_with(Layout::default()).await
    }

    /// Starts etcd and kube-apiserver as `layout` says, writes a kubeconfig and installs the
    /// CRDs under `crd/`.
    pub async fn start_with(layout: Layout) -> Result<ControlPlane> {
        let bin_dir = binaries::control_plane_bin_dir()?;
        let begun = Instant::now();
        let mut builder = tempfile::Builder::new();
        builder.prefix("sip-envtest-");
        let dir = match &layout.parent_dir {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        }
        .keep();
        let service_ip = first_address(&layout.service_cidr)?;
        let pki = Pki::create(&dir, &[layout.address.clone(), service_ip])?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");

        let mut processes = Vec::new();
        let etcd_program = binaries::tool(&bin_dir, "etcd")?;
        let etcd_args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            // Test data: durability is not worth an fsync per write.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        processes.push(Supervised::spawn(
            "etcd",
            &etcd_program,
            &etcd_args,
            dir.join("etcd.log"),
            None,
        )?);
        // The directory is owned by a process of its own, stopped last, so etcd and
        // kube-apiserver can each be restarted without losing it.
        processes.push(Supervised::spawn(
            "scratch",
            Path::new("sleep"),
            &["infinity".into()],
            dir.join("scratch.log"),
            Some(&dir),
        )?);

        let server = format!("https://{}:{api_port}", layout.address);
        let mut api_server_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            format!("--bind-address={}", layout.address),
            format!("--advertise-address={}", layout.address),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--token-auth-file={}", pki.token_file.display()),
            format!(
                "--authorization-mode={}",
                if layout.node { "Node,RBAC" } else { "RBAC" }
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            format!("--service-cluster-ip-range={}", layout.service_cidr),
            format!("--service-node-port-range={}", layout.node_port_range),
            "--allow-privileged=true".into(),
            // One client at a time in tests: fairness queues only add latency.
            "--enable-priority-and-fairness=false".into(),
        ];
        if layout.node {
            // kube-apiserver reaches kubelets (logs, exec) as a member of system:masters,
            // which the kubelet's webhook authorizer lets through.
            let (crt, key) = pki.issue(
                &dir,
                "apiserver-kubelet-client",
                ("kube-apiserver-kubelet-client", Some("system:masters")),
                &[],
            )?;
            api_server_args.push(format!("--kubelet-client-certificate={}", crt.display()));
            api_server_args.push(format!("--kubelet-client-key={}", key.display()));
            // The node's name resolves nowhere: kubectl logs and exec reach it by its address.
            api_server_args.push("--kubelet-preferred-address-types=InternalIP".into());
            api_server_args.push("--enable-admission-plugins=NodeRestriction".into());
        }
        // The token file is read once, at the API server's start.
        let node_token = if layout.node {
            Some(pki.add_token(
                &format!("system:node:{}", crate::node::NODE_NAME),
                &["system:nodes"],
            )?)
        } else {
            None
        };
        let api_server_program = binaries::tool(&bin_dir, "kube-apiserver")?;
        processes.insert(
            0,
            Supervised::spawn(
                "kube-apiserver",
                &api_server_program,
                &api_server_args,
                dir.join("kube-apiserver.log"),
                None,
            )?,
        );

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&server, &pki.ca_pem, &pki.admin_token),
        )?;

        let mut cp = ControlPlane {
            dir,
            kubeconfig,
            server,
            bin_dir,
            startup: Duration::ZERO,
            processes,
            api_server: (api_server_program, api_server_args),
            etcd: (etcd_program, etcd_args),
            pki,
            node_token,
        };
        cp.wait_ready().await?;
        let client = cp.client().await?;
        install_crds(&client, &binaries::repo_root().join(&layout.crds)).await?;
        cp.startup = begun.elapsed();
        Ok(cp)
    }

    /// A client authenticated as cluster admin.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// `kubectl` pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            for p in &mut self.processes {
                if !p.is_running() {
                    bail!(
                        "{} exited during startup; last lines of {}:\n{}",
                        p.name,
                        p.log.display(),
                        p.log_tail(30)
                    );
                }
            }
            let last_error = match self.readyz().await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                let api = &self.processes[0];
                bail!(
                    "kube-apiserver not ready after {STARTUP_DEADLINE:?} ({last_error}); last lines of {}:\n{}",
                    api.log.display(),
                    api.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn readyz(&self) -> Result<()> {
        let client = self.client().await?;
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let body = client.request_text(req).await?;
        if body.trim() == "ok" {
            Ok(())
        } else {
            bail!("/readyz answered {body:?}")
        }
    }

    /// Stops kube-apiserver, leaves it down for `down`, and starts it again on the same port
    /// and etcd: what a control-plane upgrade or crash does to the operator.
    pub async fn restart_api_server(&mut self, down: Duration) -> Result<()> {
        self.restart(0, down).await
    }

    /// Stops etcd, leaves it down for `down`, and starts it again on its data: the API server
    /// stays up and reconnects, as when a control plane's etcd member restarts.
    pub async fn restart_etcd(&mut self, down: Duration) -> Result<()> {
        self.restart(1, down).await
    }

    /// Restarts process `index` (0: kube-apiserver, 1: etcd) as it was first started.
    async fn restart(&mut self, index: usize, down: Duration) -> Result<()> {
        self.processes[index].stop();
        tokio::time::sleep(down).await;
        let (program, args) = if index == 0 {
            &self.api_server
        } else {
            &self.etcd
        };
        let name = self.processes[index].name.clone();
        let log = self.dir.join(format!("{name}.restarted.log"));
        self.processes[index] = Supervised::spawn(&name, program, args, log, None)?;
        self.wait_ready().await
    }

    /// CPU seconds kube-apiserver and etcd have used so far, by name: what a workload costs the
    /// control plane is the difference of two readings.
    pub fn cpu_seconds(&self) -> Vec<(String, f64)> {
        self.processes
            .iter()
            .filter(|p| p.name != "scratch")
            .map(|p| (p.name.clone(), p.child_pid().map_or(0.0, cpu_seconds_of)))
            .collect()
    }

    /// Stops every process and removes the directory.
    pub fn stop(&mut self) {
        // The API server first, so it does not log etcd's departure as an error.
        for p in &mut self.processes {
            p.stop();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first host address of an IPv4 CIDR: the `kubernetes` Service's ClusterIP.
fn first_address(cidr: &str) -> Result<String> {
    let (base, _) = cidr.split_once('/').context("a CIDR has a prefix length")?;
    let ip: std::net::Ipv4Addr = base.parse().context("an IPv4 CIDR")?;
    Ok(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
}

/// A kubeconfig for `server` that authenticates with `token`.
pub(crate) fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sip-envtest
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: sip-envtest-admin
  user:
    token: {token}
contexts:
- name: sip-envtest
  context:
    cluster: sip-envtest
    user: sip-envtest-admin
current-context: sip-envtest
"
    )
}

/// Applies every CRD under `dir` (recursively) and waits until each is established.
pub async fn install_crds(client: &kube::Client, dir: &Path) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for path in yaml_files(dir)? {
        let text = std::fs::read_to_string(&path)?;
        let crd: CustomResourceDefinition =
            serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {}", path.display()))?;
        names.push(name);
    }
    for name in names {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 30s"))??;
    }
    Ok(())
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(yaml_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// CPU seconds process `pid` has used so far: the sum of its threads' run times in
/// `/proc/<pid>/task/*/schedstat` (nanoseconds; `/proc/<pid>/stat` counts 10 ms ticks, too
/// coarse for one cluster's work). A thread that has exited is no longer counted: the Go
/// runtime and tokio keep theirs.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanoseconds: u64 = tasks
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    nanoseconds as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds_of;

    #[test]
    fn a_process_cpu_time_grows_with_its_work_and_a_gone_one_has_none() {
        let me = std::process::id();
        let before = cpu_seconds_of(me);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = cpu_seconds_of(me) - before;
        // 50 ms of spinning on this thread; the machine may lend it less than all of that.
        assert!(spent > 0.02, "{spent} s");
        assert_eq!(cpu_seconds_of(u32::MAX), 0.0);
    }
}

//! A one-node Kubernetes cluster that the project starts itself: the local control plane (with
//! kube-controller-manager) on the node's address, kube-scheduler, kube-proxy, a kubelet, and
//! Debian's containerd and runc with a CNI bridge, so pods really run and Services really route.
//!
//! It keeps to what is its own: one directory (`/tmp/sip-node-*`), one bridge ([`BRIDGE`]) on
//! addresses reserved for benchmarking (RFC 2544: [`POD_CIDR`], [`SERVICE_CIDR`]), one cgroup
//! ([`CGROUP`]), its own containerd socket. `tools/node/down.sh` undoes all of it (processes,
//! mounts, iptables chains, bridge, cgroups); it runs when the cluster is stopped or dropped,
//! and, from a guard process, when the process that started it dies, so a test binary that
//! panics or is killed leaves nothing either. One node cluster runs on a machine at a time.

mod config;
mod host;
pub mod images;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use crate::binaries::{self, repo_root};
use crate::control_plane::{ControlPlane, Layout, kubeconfig_yaml};
use crate::process::Supervised;
use host::{down, make_bridge, make_cgroups, refuse_foreign_chains, spawn_guard};

pub const NODE_NAME: &str = "sip-node";
/// The node's address: the bridge's, where kube-apiserver, the kubelet and the node ports listen.
pub const NODE_IP: &str = "198.18.0.1";
pub const POD_CIDR: &str = "198.18.0.0/24";
pub const SERVICE_CIDR: &str = "198.19.0.0/24";
pub const BRIDGE: &str = "sipnode0";
pub const CGROUP: &str = "sip-node";
pub const PAUSE_IMAGE: &str = "localhost/sip-node/pause:1";
/// Where the running cluster's directory is recorded, and its lock.
pub(crate) const RUN_DIR: &str = "/run/sip-node";
const READY_DEADLINE: Duration = Duration::from_secs(120);
const LOCK_WAIT: Duration = Duration::from_secs(120);

pub struct NodeCluster {
    pub control_plane: ControlPlane,
    /// The node's directory (configurations, containerd's state, the kubelet's root, logs).
    pub dir: PathBuf,
    processes: Vec<Supervised>,
    guard: Option<Child>,
    _lock: File,
}

/// What stops a cluster left running: `bash tools/node/down.sh <dir>`.
pub fn stop_command(dir: &Path) -> String {
    let script = repo_root().join("tools/node/down.sh");
    let script = script.canonicalize().unwrap_or(script);
    format!("bash {} {}", script.display(), dir.display())
}

impl NodeCluster {
    /// Starts the cluster and loads the image archives under `images` into its containerd.
    pub async fn start(images: &Path) -> Result<NodeCluster> {
        std::fs::create_dir_all(RUN_DIR)?;
        if let Ok(kept) = std::fs::read_to_string(Path::new(RUN_DIR).join("kept"))
            && Path::new(kept.trim()).exists()
        {
            bail!(
                "a node cluster left running by `cargo demo --node --keep` is up ({}); stop it \
                 first: {}",
                kept.trim(),
                stop_command(Path::new(kept.trim()))
            );
        }
        let lock = File::create(Path::new(RUN_DIR).join("lock"))?;
        // A cluster whose process just ended is being torn down by its guard, which holds the
        // lock meanwhile: wait for it, not for a cluster in use.
        let deadline = Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            if Instant::now() > deadline {
                bail!(
                    "another node cluster runs on this machine (its directory is in \
                     {RUN_DIR}/current); the lock stayed taken for {LOCK_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Ok(leftover) = std::fs::read_to_string(Path::new(RUN_DIR).join("current")) {
            eprintln!("removing what an earlier node cluster left: {leftover}");
            down(Path::new(leftover.trim()))?;
        }
        refuse_foreign_chains()?;

        let dir = tempfile::Builder::new()
            .prefix("sip-node-")
            .tempdir()?
            .keep();
        let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
        std::fs::write(dir.join("started"), "")?;
        std::fs::write(
            dir.join("node.env"),
            format!(
                "BRIDGE={BRIDGE}\nCGROUP={CGROUP}\nFORWARD_BEFORE={}\nSTARTED={}\n",
                forward_before.trim(),
                dir.join("started").display()
            ),
        )?;
        std::fs::write(
            Path::new(RUN_DIR).join("current"),
            dir.display().to_string(),
        )?;
        // Left running on purpose, it has no guard: its stop command tears it down.
        let guard = if crate::process::outliving() {
            None
        } else {
            Some(spawn_guard(&dir)?)
        };
        match NodeCluster::start_in(dir.clone(), guard, lock, images).await {
            Ok(node) => Ok(node),
            Err(e) => {
                // The partial cluster is dropped (and torn down) by now; a failure before it
                // existed left at most the bridge and the directory.
                down(&dir).ok();
                Err(e)
            }
        }
    }

    async fn start_in(
        dir: PathBuf,
        guard: Option<Child>,
        lock: File,
        images: &Path,
    ) -> Result<NodeCluster> {
        let bin_dir = binaries::control_plane_bin_dir()?;
        // The bridge holds the node's address before kube-apiserver binds it.
        make_bridge()?;
        let control_plane = ControlPlane::start_with(Layout {
            address: NODE_IP.into(),
            service_cidr: SERVICE_CIDR.into(),
            node_port_range: "30000-32767".into(),
            node: true,
            // Inside the node's directory, so down.sh finds its processes too.
            parent_dir: Some(dir.clone()),
            // metal3's CRD, as a management cluster has it; sip's comes with its manifests.
            crds: "crd/testing".into(),
        })
        .await?;
        let mut node = NodeCluster {
            control_plane,
            dir,
            processes: Vec::new(),
            guard,
            _lock: lock,
        };
        node.start_components(&bin_dir, images).await?;
        Ok(node)
    }

    async fn start_components(&mut self, bin_dir: &Path, images: &Path) -> Result<()> {
        let dir = self.dir.clone();
        for sub in ["cni/net.d", "cni/ipam", "kubelet", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let wrapper = repo_root().join("tools/node/runc-wrapper");
        std::fs::write(
            dir.join("containerd.toml"),
            config::containerd(&dir, &wrapper),
        )?;
        std::fs::write(
            dir.join("cni/net.d/10-sip-node.conflist"),
            config::cni(&dir),
        )?;
        make_cgroups()?;
        let log = |name: &str| dir.join("logs").join(format!("{name}.log"));
        self.processes.push(Supervised::spawn(
            "containerd",
            Path::new("containerd"),
            &[
                "--config".into(),
                dir.join("containerd.toml").display().to_string(),
            ],
            log("containerd"),
            None,
        )?);
        self.wait_containerd().await?;
        self.import_images(images)?;

        let cp = &self.control_plane;
        let admin = cp.kubeconfig.display().to_string();
        let node_kubeconfig = dir.join("kubelet.kubeconfig");
        let token = cp
            .node_token
            .as_deref()
            .context("the control plane has no node token")?;
        std::fs::write(
            &node_kubeconfig,
            kubeconfig_yaml(&cp.server, &cp.pki.ca_pem, token),
        )?;
        let (cert, key) = cp.pki.issue(
            &dir,
            "kubelet-serving",
            (NODE_NAME, None),
            &[NODE_IP.to_string(), NODE_NAME.to_string()],
        )?;
        let kubelet = config::Kubelet {
            dir: &dir,
            client_ca: &cp.pki.ca_cert,
            serving_cert: &cert,
            serving_key: &key,
        };
        std::fs::write(dir.join("kubelet.yaml"), kubelet.config())?;
        std::fs::write(
            dir.join("kube-proxy.yaml"),
            config::kube_proxy(&cp.kubeconfig),
        )?;
        let ca = cp.pki.ca_cert.display().to_string();
        let components: [(&str, Vec<String>); 4] = [
            (
                "kube-controller-manager",
                vec![
                    format!("--kubeconfig={admin}"),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    format!("--root-ca-file={ca}"),
                    format!(
                        "--service-account-private-key-file={}",
                        cp.pki.service_account_key.display()
                    ),
                    format!("--cluster-name={NODE_NAME}"),
                ],
            ),
            (
                "kube-scheduler",
                vec![
                    format!("--kubeconfig={admin}"),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                ],
            ),
            (
                "kube-proxy",
                vec![format!(
                    "--config={}",
                    dir.join("kube-proxy.yaml").display()
                )],
            ),
            (
                "kubelet",
                vec![
                    format!("--config={}", dir.join("kubelet.yaml").display()),
                    format!("--kubeconfig={}", node_kubeconfig.display()),
                    format!("--root-dir={}", dir.join("kubelet").display()),
                    format!("--cert-dir={}", dir.join("kubelet/pki").display()),
                    format!("--hostname-override={NODE_NAME}"),
                    format!("--node-ip={NODE_IP}"),
                ],
            ),
        ];
        let mut started = Vec::new();
        for (name, args) in components {
            let program = binaries::tool(bin_dir, name)?;
            started.push(Supervised::spawn(name, &program, &args, log(name), None)?);
        }
        self.processes.extend(started);
        self.wait_node_ready().await
    }

    /// `kubectl apply -k manifests/`, the operator exactly as shipped, and waits until its
    /// Deployment has rolled out (both replicas ready).
    pub fn deploy_operator(&self) -> Result<()> {
        let manifests = repo_root().join("manifests");
        for args in [
            vec!["apply", "-k", manifests.to_str().context("a UTF-8 path")?],
            vec![
                "rollout",
                "status",
                "deployment/sip-operator",
                "-n",
                "sip-system",
                "--timeout=180s",
            ],
        ] {
            let status = self.kubectl().args(&args).status()?;
            if !status.success() {
                bail!("kubectl {} failed ({status})", args.join(" "));
            }
        }
        Ok(())
    }

    /// A client authenticated as cluster admin.
    pub async fn client(&self) -> Result<kube::Client> {
        self.control_plane.client().await
    }

    /// `kubectl` pointed at this cluster.
    pub fn kubectl(&self) -> Command {
        self.control_plane.kubectl()
    }

    async fn wait_containerd(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctr().arg("version").output()?;
            if out.status.success() {
                return Ok(());
            }
            if !self.processes[0].is_running() || Instant::now() > deadline {
                bail!(
                    "containerd did not start: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.processes[0].log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `ctr` on the node's containerd, in the namespace the kubelet uses.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["--namespace", "k8s.io"])
            .stdin(Stdio::null());
        c
    }

    fn import_images(&self, images: &Path) -> Result<()> {
        let mut archives: Vec<PathBuf> = std::fs::read_dir(images)
            .with_context(|| format!("reading {}", images.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "tar"))
            .collect();
        archives.sort();
        for archive in archives {
            let out = self
                .ctr()
                .args(["images", "import"])
                .arg(&archive)
                .output()?;
            if !out.status.success() {
                bail!(
                    "importing {}: {}",
                    archive.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(())
    }

    async fn wait_node_ready(&mut self) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client().await?);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            for p in &mut self.processes {
                if !p.is_running() {
                    bail!(
                        "{} exited; last lines of {}:\n{}",
                        p.name,
                        p.log.display(),
                        p.log_tail(30)
                    );
                }
            }
            let ready = nodes.get_opt(NODE_NAME).await?.is_some_and(|n| {
                n.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                break;
            }
            if Instant::now() > deadline {
                let kubelet = self.processes.last().context("no kubelet")?;
                bail!(
                    "node {NODE_NAME} not Ready within {READY_DEADLINE:?}; last lines of the kubelet's log:\n{}",
                    kubelet.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // What kubeadm does for a control-plane node (a kubelet may not set a node-role label
        // itself); no taint: this one node runs everything.
        let label = serde_json::json!({"metadata": {"labels": {
            "node-role.kubernetes.io/control-plane": ""
        }}});
        nodes
            .patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(&label))
            .await?;
        Ok(())
    }

    /// Stops every component and removes all the cluster made. Also done on drop.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill().ok();
            guard.wait().ok();
        }
        // The kubelet first, so it starts no container while the rest goes; the control plane
        // by its supervisors, which also stop what they keep; then whatever is left.
        for p in self.processes.iter_mut().rev() {
            p.stop();
        }
        self.processes.clear();
        self.control_plane.stop();
        if let Err(e) = down(&self.dir) {
            eprintln!("node cluster teardown: {e:#}");
        }
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

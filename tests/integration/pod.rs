//! Runs a Deployment's pod, as the operator applied it, in a [`Sandbox`]: the ConfigMap,
//! Secret and emptyDir volumes written out as the kubelet would (item paths and modes, group
//! `fsGroup`), each container's mounts in a mount namespace of its own, its user and groups
//! from the security contexts, its environment, the pod's `hostAliases` in `/etc/hosts`; init
//! containers run to the end, then the first container starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, PodSpec, Secret};
use kube::Api;

use super::sandbox::{OVERLAID, Sandbox, quote};

/// The pod spec of a Deployment, with the contents of its volumes read from the API server.
pub struct Pod {
    spec: PodSpec,
    /// Volume name -> file path -> (content, mode).
    volumes: BTreeMap<String, Volume>,
}

enum Volume {
    Files(BTreeMap<String, (Vec<u8>, u32)>),
    Empty,
}

impl Pod {
    pub async fn read(client: &kube::Client, namespace: &str, deployment: &str) -> Pod {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let spec = deployments
            .get(deployment)
            .await
            .unwrap_or_else(|e| panic!("Deployment {namespace}/{deployment}: {e}"))
            .spec
            .and_then(|s| s.template.spec)
            .expect("the Deployment has a pod spec");
        let mut volumes = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let volume = if let Some(cm) = &v.config_map {
                let data = config_maps.get(&cm.name).await.unwrap().data;
                let data = data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                Volume::Files(project(
                    data,
                    cm.items.as_deref(),
                    cm.default_mode.unwrap_or(0o644),
                ))
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.as_deref().unwrap();
                let data = secrets.get(name).await.unwrap().data.unwrap_or_default();
                let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
                Volume::Files(project(
                    data,
                    s.items.as_deref(),
                    s.default_mode.unwrap_or(0o644),
                ))
            } else if v.empty_dir.is_some() {
                Volume::Empty
            } else {
                panic!(
                    "volume {} is of a kind the pod runner does not lay out",
                    v.name
                )
            };
            volumes.insert(v.name.clone(), volume);
        }
        Pod { spec, volumes }
    }

    /// Writes the volumes under the sandbox's scratch directory, adds the host aliases, runs
    /// the init containers to the end and starts the first container (its log is `main`), with
    /// `entrypoint` standing for the image's when the container names no command.
    pub fn run(&self, sandbox: &mut Sandbox, entrypoint: &[&str]) {
        let fs_group = self.spec.security_context.as_ref().and_then(|s| s.fs_group);
        let root = sandbox.dir.join("volumes");
        for (name, volume) in &self.volumes {
            write_volume(&root.join(name), volume, fs_group);
        }
        let mut hosts = String::new();
        for alias in self.spec.host_aliases.iter().flatten() {
            let names = alias.hostnames.clone().unwrap_or_default().join(" ");
            writeln!(hosts, "{}\t{names}", alias.ip).unwrap();
        }
        if !hosts.is_empty() {
            sandbox.sh_ok(&format!("printf %s {} >> /etc/hosts", quote(&hosts)));
        }
        for init in self.spec.init_containers.iter().flatten() {
            let script = self.container_script(init, &root, entrypoint);
            let out = sandbox.sh(&script);
            assert!(
                out.status.success(),
                "init container {} failed ({}):\n{}{}",
                init.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let main = &self.spec.containers[0];
        let script = self.container_script(main, &root, entrypoint);
        sandbox.spawn("main", &format!("sh -c {}", quote(&script)));
    }

    /// The shell that becomes `container`: its mounts in a mount namespace of its own, then its
    /// command as its user.
    fn container_script(&self, container: &Container, root: &Path, entrypoint: &[&str]) -> String {
        let mut mounts = String::from("set -eu\n");
        for m in container.volume_mounts.iter().flatten() {
            // The sandbox's own /run, and /tmp inside this container's mount namespace, are
            // the container's too.
            assert!(
                OVERLAID
                    .iter()
                    .chain(&["/run"])
                    .any(|top| m.mount_path.starts_with(&format!("{top}/")))
                    || m.mount_path == "/tmp",
                "{} mounts {} outside the sandbox's overlays {OVERLAID:?}",
                container.name,
                m.mount_path
            );
            let source = root.join(&m.name);
            writeln!(
                mounts,
                "mkdir -p {p}\nmount --bind {s} {p}",
                p = quote(&m.mount_path),
                s = quote(&source.to_string_lossy())
            )
            .unwrap();
            if m.read_only == Some(true) {
                writeln!(mounts, "mount -o remount,bind,ro {}", quote(&m.mount_path)).unwrap();
            }
        }
        let pod_security = self.spec.security_context.as_ref();
        let security = container.security_context.as_ref();
        let user = security
            .and_then(|s| s.run_as_user)
            .or(pod_security.and_then(|s| s.run_as_user));
        let group = security
            .and_then(|s| s.run_as_group)
            .or(pod_security.and_then(|s| s.run_as_group));
        let fs_group = pod_security.and_then(|s| s.fs_group);
        let mut exec = String::from(
            "exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root",
        );
        for e in container.env.iter().flatten() {
            let value = e.value.clone().unwrap_or_default();
            write!(exec, " {}", quote(&format!("{}={value}", e.name))).unwrap();
        }
        if let Some(uid) = user {
            let gid = group.unwrap_or(uid);
            let groups = fs_group.map_or("--clear-groups".to_string(), |g| format!("--groups {g}"));
            write!(exec, " setpriv --reuid {uid} --regid {gid} {groups} --").unwrap();
        }
        let command: Vec<String> = match &container.command {
            Some(c) => c.clone(),
            None => entrypoint.iter().map(|s| s.to_string()).collect(),
        };
        for part in command.iter().chain(container.args.iter().flatten()) {
            write!(exec, " {}", quote(part)).unwrap();
        }
        format!(
            "unshare --mount --propagation private sh -c {}",
            quote(&format!("{mounts}{exec}\n"))
        )
    }
}

/// A ConfigMap's or Secret's keys as the kubelet lays them out: `items` pick and rename keys
/// (each with its mode or the default), else every key under its own name.
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mode = |m: Option<i32>| m.unwrap_or(default_mode) as u32;
    match items {
        Some(items) => items
            .iter()
            .map(|i| {
                let content = data.get(&i.key).cloned().unwrap_or_else(|| {
                    panic!("the volume names key {} that its source lacks", i.key)
                });
                (i.path.clone(), (content, mode(i.mode)))
            })
            .collect(),
        None => data
            .into_iter()
            .map(|(k, v)| (k, (v, mode(None))))
            .collect(),
    }
}

/// Files owned by root and group `fs_group` (as the kubelet does with fsGroup), directories
/// setgid; an emptyDir world-writable, as the kubelet makes it.
fn write_volume(dir: &PathBuf, volume: &Volume, fs_group: Option<i64>) {
    std::fs::create_dir_all(dir).unwrap();
    let gid = fs_group.map(|g| g as u32);
    match volume {
        Volume::Empty => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        Volume::Files(files) => {
            for (path, (content, mode)) in files {
                let file = dir.join(path);
                std::fs::write(&file, content).unwrap();
                chown(&file, Some(0), gid).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            let mode = if gid.is_some() { 0o2755 } else { 0o755 };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    if let Some(g) = gid {
        chown(dir, Some(0), Some(g)).unwrap();
    }
}

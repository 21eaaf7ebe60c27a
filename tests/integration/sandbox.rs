//! A stand-in for a node running a container image: a mount namespace whose `/etc`, `/home`,
//! `/opt` and `/usr/local` are overlays (writes stay inside), a network namespace of its own
//! (loopback, plus the veth links a test makes), the image's files laid over the host's, and
//! Debian's binaries standing in for the image's. Nothing it does is visible outside it.
//!
//! A holder process keeps the namespaces, a PID namespace among them whose first process is
//! the holder's child; every process of the sandbox is started with `nsenter` into them. When
//! the sandbox is dropped (a test's end or its panic) or the test process dies, the holder dies
//! (parent-death signal), `unshare --kill-child` kills that first process, and the kernel kills
//! every other process of the PID namespace with it: a daemon that forked, switched user
//! (which clears a parent-death signal) or left its session cannot outlive the sandbox.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directories a sandbox overlays; an image's files and a pod's mounts go under these.
pub const OVERLAID: [&str; 4] = ["/etc", "/home", "/opt", "/usr/local"];

/// Where `tools/test-tools/ensure.sh` found or installed the software the tests run (haproxy,
/// prometheus, OpenSSH, sushy-tools). It fails the test when the script cannot provide them,
/// unless `SIP_ALLOW_MISSING_TOOLS` is set, the explicit opt-out: then `None`, and the caller
/// skips, saying so.
pub fn tools() -> Option<&'static BTreeMap<String, String>> {
    static TOOLS: OnceLock<Option<BTreeMap<String, String>>> = OnceLock::new();
    let found = TOOLS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/test-tools/ensure.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tools/test-tools/ensure.sh");
        if !out.status.success() {
            assert!(
                std::env::var_os("SIP_ALLOW_MISSING_TOOLS").is_some(),
                "these tests need haproxy, prometheus, OpenSSH, jq, curl, iproute2 and \
                 sushy-tools, which {} could not install (see above; it installs as root); set \
                 SIP_ALLOW_MISSING_TOOLS=1 to skip them instead",
                script.display()
            );
            return None;
        }
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    });
    if found.is_none() {
        eprintln!("SIP_ALLOW_MISSING_TOOLS is set and the tools are missing: skipping");
    }
    found.as_ref()
}

/// A path of the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Single-quoted for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub struct Sandbox {
    pub name: String,
    /// Scratch space on the host: overlay layers, volumes, logs.
    pub dir: PathBuf,
    holder: Child,
    /// The host's PID of the PID namespace's first process (the holder's child).
    init: u32,
    daemons: Vec<Child>,
}

/// What an image brings: its files, and the command its build runs once over them.
pub struct Image<'a> {
    pub rootfs: &'a Path,
    pub setup: &'a str,
}

impl Sandbox {
    /// A sandbox with the host's binaries, only the base system's accounts (uid < 1000, as a
    /// fresh image has), and `image` laid over it.
    pub fn start(name: &str, image: Option<Image<'_>>) -> Sandbox {
        assert!(
            is_root(),
            "the function tests make namespaces and must run as root"
        );
        let dir = std::env::temp_dir().join(format!(
            "sip-sandbox-{name}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut init = String::from("set -eu\nip link set lo up\n");
        for top in OVERLAID {
            let layer = dir.join(format!("overlay{}", top.replace('/', "-")));
            let (upper, work) = (layer.join("upper"), layer.join("work"));
            writeln!(
                init,
                "mkdir -p {u} {w}\nmount -t overlay overlay -o lowerdir={top},upperdir={u},workdir={w} {top}",
                u = upper.display(),
                w = work.display()
            )
            .unwrap();
        }
        // A container's own /run (sshd's privilege separation directory lives there).
        init.push_str("mount -t tmpfs tmpfs /run\n");
        for db in ["passwd", "group"] {
            writeln!(
                init,
                "awk -F: '$3 < 1000 || $3 == 65534' /etc/{db} > /etc/{db}.base && cat /etc/{db}.base > /etc/{db}"
            )
            .unwrap();
        }
        init.push_str(
            "awk -F: 'NR==FNR {keep[$1]=1; next} keep[$1]' /etc/passwd /etc/shadow > /etc/shadow.base && cat /etc/shadow.base > /etc/shadow\n",
        );
        if let Some(image) = image {
            writeln!(
                init,
                "cp -a {}/. /\nrm -f /etc/ssh/ssh_host_*\n{}",
                image.rootfs.display(),
                image.setup
            )
            .unwrap();
        }
        let ready = dir.join("ready");
        writeln!(init, "touch {}\nexec sleep infinity", ready.display()).unwrap();
        let log = std::fs::File::create(dir.join("sandbox.log")).unwrap();
        let holder = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .args(["unshare", "--mount", "--net", "--propagation", "private"])
            .args(["--pid", "--mount-proc", "--kill-child=KILL"])
            .args(["sh", "-c", &init])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the sandbox (setpriv and unshare from util-linux)");
        let mut sandbox = Sandbox {
            name: name.into(),
            dir,
            holder,
            init: 0,
            daemons: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Ok(Some(status)) = sandbox.holder.try_wait() {
                panic!(
                    "sandbox {name} did not start ({status}):\n{}",
                    sandbox.log("sandbox")
                );
            }
            assert!(Instant::now() < deadline, "sandbox {name} took over 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let holder = sandbox.holder.id();
        sandbox.init = children(holder)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("sandbox {name}: the holder {holder} has no child"));
        sandbox
    }

    fn pid(&self) -> u32 {
        self.init
    }

    /// A command that runs inside the sandbox's namespaces. `nsenter` forks into the PID
    /// namespace; the program dies with that `nsenter` (parent-death signal), and leads a
    /// process group of its own, which [`Sandbox::stop`] kills whole.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args([
                "-n",
                "-m",
                "-p",
                "--",
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
            ])
            .args(["setsid", program])
            .stdin(Stdio::null());
        c
    }

    /// The host's PIDs of every process in the sandbox's PID namespace, its first included.
    pub fn processes(&self) -> Vec<u32> {
        let Ok(mine) = std::fs::read_link(format!("/proc/{}/ns/pid", self.init)) else {
            return Vec::new();
        };
        processes_in(&mine)
    }

    /// Runs `sh -c script` inside and returns its output, whatever its exit.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh")
            .args(["-c", script])
            .output()
            .expect("run a command in the sandbox")
    }

    /// Runs `sh -c script` inside and returns its stdout, failing the test if it fails.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in sandbox {}: `{script}` failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `sh -c script` inside as a long-running process logging to `<log>.log`; it is
    /// killed when the sandbox is dropped. Returns its index for [`Sandbox::stop`].
    pub fn spawn(&mut self, log: &str, script: &str) -> usize {
        let file = std::fs::File::create(self.dir.join(format!("{log}.log"))).unwrap();
        let child = self
            .command("sh")
            .args(["-c", &format!("exec {script}")])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start a process in the sandbox");
        self.daemons.push(child);
        self.daemons.len() - 1
    }

    /// Kills a process started by [`Sandbox::spawn`] with everything it forked (in its own
    /// session or not), and waits for it.
    pub fn stop(&mut self, index: usize) {
        let child = &mut self.daemons[index];
        let mut tree = vec![child.id()];
        let mut next = 0;
        while next < tree.len() {
            tree.extend(children(tree[next]));
            next += 1;
        }
        let pids: Vec<String> = tree.iter().map(u32::to_string).collect();
        Command::new("kill").arg("-KILL").args(&pids).status().ok();
        child.wait().ok();
        wait_gone(&tree, &self.name);
    }

    /// What a process started by [`Sandbox::spawn`] has written so far.
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    /// Links this sandbox to `other` with a veth pair (`eth0` on both sides), giving each side
    /// its addresses (CIDR notation).
    pub fn link(&self, other: &Sandbox, mine: &[&str], theirs: &[&str]) {
        let out = Command::new("ip")
            .args(["link", "add", "eth0", "netns"])
            .arg(self.pid().to_string())
            .args(["type", "veth", "peer", "name", "eth0", "netns"])
            .arg(other.pid().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip link add veth: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (sandbox, addresses) in [(self, mine), (other, theirs)] {
            let mut script = String::new();
            for a in addresses {
                writeln!(script, "ip addr add {a} dev eth0").unwrap();
            }
            script.push_str("ip link set eth0 up");
            sandbox.sh_ok(&script);
        }
    }

    /// Plugs this sandbox into a bridge of the host (a node cluster's) with a veth pair, `eth0`
    /// inside with `addresses` (CIDR notation); the pair goes with the sandbox.
    pub fn plug_into(&self, bridge: &str, addresses: &[&str]) {
        let outside = format!("sipv{:x}{}", std::process::id() % 0xffff, unique());
        for args in [
            vec![
                "link".to_string(),
                "add".into(),
                outside.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "eth0".into(),
                "netns".into(),
                self.pid().to_string(),
            ],
            vec![
                "link".into(),
                "set".into(),
                outside.clone(),
                "master".into(),
                bridge.into(),
                "up".into(),
            ],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut script = String::new();
        for a in addresses {
            writeln!(script, "ip addr add {a} dev eth0").unwrap();
        }
        script.push_str("ip link set eth0 up");
        self.sh_ok(&script);
    }

    /// Polls `script` inside until it succeeds, failing with `what` after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, script: &str) -> Duration {
        let start = Instant::now();
        loop {
            let out = self.sh(script);
            if out.status.success() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "in sandbox {}: {what} not within {limit:?}; last try said:\n{}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.kill().ok();
            d.wait().ok();
        }
        // The holder's death kills the PID namespace's first process (--kill-child), and with
        // it every process in the namespace; wait until the kernel has reaped them all, so a
        // test's end means its processes' end.
        let processes = self.processes();
        self.holder.kill().ok();
        self.holder.wait().ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            if Instant::now() > deadline {
                eprintln!(
                    "sandbox {}: processes {processes:?} outlived it by 10 s",
                    self.name
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        } else {
            eprintln!(
                "sandbox {} kept for a look: {}",
                self.name,
                self.dir.display()
            );
        }
    }
}

/// Waits until none of `pids` runs (a killed process is gone, or a zombie, a moment after the
/// signal), saying so if one is still running after 10 s.
fn wait_gone(pids: &[u32], sandbox: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(p) = pids.iter().find(|p| is_running(**p)) {
        if Instant::now() > deadline {
            eprintln!(
                "sandbox {sandbox}: process {p} (of {pids:?}) still runs 10 s after its kill"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// The host's PIDs of a process's children (each thread's, as the kernel lists them).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The host's PIDs of every live process (zombies aside: the namespace's first process, a
/// `sleep`, reaps no orphan) whose PID namespace is `namespace` (a `pid:[inode]` link).
fn processes_in(namespace: &Path) -> Vec<u32> {
    let Ok(all) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = all
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|ns| ns == namespace)
                && std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, r)| !r.starts_with('Z'))
                })
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

//! The support services do their job when they run. The operator takes a tenant to Ready on the
//! real API server; each service's pod, as applied (its Deployment, ConfigMaps and Secrets), then
//! runs in a sandbox of its own ([`Sandbox`], [`Pod`]) with Debian's haproxy and OpenSSH
//! standing in for the images' binaries, and the test uses it as a tenant's operator would.
//!
//! The tenant's hosts live in a second sandbox linked to the service's by a veth pair, on
//! TEST-NET-1 addresses (192.0.2.0/24, RFC 5737: never routed anywhere): its kube-apiservers
//! and node ports (`fixtures/fake_backend.py`), its nodes' sshd, and its BMCs (sushy-tools,
//! metal3's Redfish emulator, with its fake driver).

use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use serde_json::json;
use sip::api::SIPCluster;
use sip::services::meta::object_name;
use sip::services::{ServiceId, ServiceKind};

use crate::common::{TestEnv, sample_cluster, start_operator, test_env, wait_for};
use crate::pod::Pod;
use crate::sandbox::{Image, Sandbox, quote, repo_path, tools};
use crate::tenant::{Host, Keys, Tenant, node_keys};

/// The tenant's hosts and BMCs on TEST-NET-1 addresses (192.0.2.0/24, RFC 5737: never routed).
const TENANT: Tenant = Tenant {
    hosts: [
        (
            "cp-1",
            "control-plane",
            "192.0.2.11",
            "5a1e0000-0000-4000-8000-000000000011",
        ),
        (
            "cp-2",
            "control-plane",
            "192.0.2.12",
            "5a1e0000-0000-4000-8000-000000000012",
        ),
        (
            "wk-1",
            "worker",
            "192.0.2.21",
            "5a1e0000-0000-4000-8000-000000000021",
        ),
        (
            "wk-2",
            "worker",
            "192.0.2.22",
            "5a1e0000-0000-4000-8000-000000000022",
        ),
    ],
    bmc: "192.0.2.100:8000",
    label: None,
};
const HOSTS: [Host; 4] = TENANT.hosts;
const SERVICE_SIDE: &str = "192.0.2.1/24";
const CLUSTER: &str = "tenant";

/// The tenant taken to Ready by the operator, with sip's jump host image (the default) and the
/// user's key listed; the operator is stopped once it is, and the pod of `kind` read back.
/// `None`: the tools are missing and `SIP_ALLOW_MISSING_TOOLS` says to skip.
async fn ready_tenant(prefix: &str, kind: ServiceKind) -> Option<(TestEnv, Pod, Keys, SIPCluster)> {
    tools()?;
    let env = test_env(prefix).await;
    let keys = Keys::make(&std::env::temp_dir().join(format!("sip-keys-{}", env.namespace)));
    TENANT.create_hosts(&env).await;
    node_keys(&env, std::fs::read(&keys.node.0).unwrap()).await;
    let user_key = keys.user.1.clone();
    let cluster = sample_cluster(&env, CLUSTER, |m| {
        let jump = &mut m["spec"]["services"]["jumpHost"][0];
        jump.as_object_mut().unwrap().remove("image");
        jump["sshAuthorizedKeys"] = json!([user_key]);
    });
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let operator = start_operator(&env);
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let ready = wait_for(&api, CLUSTER, "Ready", |c| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.phase == Some(sip::api::Phase::Ready))
    })
    .await
    .unwrap();
    operator.abort();
    let name = object_name(CLUSTER, ServiceId { kind, index: 0 });
    let pod = Pod::read(&env.client, &env.namespace, &name).await;
    Some((env, pod, keys, ready))
}

/// The sandbox of the tenant's hosts, linked to the service's sandbox.
fn tenant_side(service: &Sandbox) -> Sandbox {
    let tenant = Sandbox::start("tenant", None);
    let addresses = TENANT.addresses(24);
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    service.link(&tenant, &[SERVICE_SIDE], &addresses);
    tenant
}

/// What `count` HTTP(S) GETs of `url` answered (each backend answers its name).
fn answers(sandbox: &Sandbox, url: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            sandbox
                .sh_ok(&format!("curl -sSk --max-time 5 {url}"))
                .trim()
                .to_string()
        })
        .collect()
}

/// Waits until a `fake_backend.py` started with `log` listens.
fn wait_listening(tenant: &Sandbox, log: &str) {
    let start = Instant::now();
    while !tenant.log(log).contains("listening") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{log} did not start:\n{}",
            tenant.log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many of haproxy's log lines contain `text` (each event is logged on stdout and, as a
/// warning, on stderr: both count).
fn haproxy_logged(lb: &Sandbox, text: &str) -> usize {
    lb.log("main").lines().filter(|l| l.contains(text)).count()
}

/// Waits until haproxy logs `text` once more than the `before` times it had, failing after
/// `limit`; returns how long it took.
fn wait_for_log(lb: &Sandbox, text: &str, before: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    while haproxy_logged(lb, text) <= before {
        assert!(
            start.elapsed() < limit,
            "haproxy did not log {text:?} again within {limit:?}; its log:\n{}",
            lb.log("main")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[tokio::test]
async fn the_control_plane_balancer_follows_the_apiservers_health() {
    let (_env, pod, _keys, _) =
        match ready_tenant("fn-lb-cp", ServiceKind::LoadBalancerControlPlane).await {
            Some(tenant) => tenant,
            None => return,
        };
    let mut lb = Sandbox::start("lb-control-plane", None);
    let mut tenant = tenant_side(&lb);
    let cert = rcgen::generate_simple_self_signed(vec!["kube-apiserver".to_string()]).unwrap();
    let (cert_path, key_path) = (tenant.dir.join("tls.crt"), tenant.dir.join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let fake = repo_path("tests/integration/fixtures/fake_backend.py");
    let tenant_dir = tenant.dir.clone();
    let unready = |name: &str| tenant_dir.join(format!("{name}.unready"));
    let start_apiserver = |tenant: &mut Sandbox, name: &str, ip: &str| {
        let script = format!(
            "python3 {} --name {name} --listen {ip}:6443 --cert {} --key {} --unready {}",
            fake.display(),
            cert_path.display(),
            key_path.display(),
            unready(name).display()
        );
        let index = tenant.spawn(&format!("apiserver-{name}"), &script);
        wait_listening(tenant, &format!("apiserver-{name}"));
        index
    };
    start_apiserver(&mut tenant, "cp-1", HOSTS[0].2);
    let cp2 = start_apiserver(&mut tenant, "cp-2", HOSTS[1].2);
    pod.run(&mut lb, &[]);
    let frontend = "https://127.0.0.1:6443/";
    lb.wait_until(
        "haproxy forwarding to an apiserver",
        Duration::from_secs(20),
        &format!("curl -sSk --max-time 2 {frontend}"),
    );

    let seen = answers(&lb, frontend, 8);
    for cp in ["cp-1", "cp-2"] {
        assert!(seen.iter().any(|s| s == cp), "{cp} gets requests: {seen:?}");
    }

    // Each server has passed a check (until then haproxy counts it barely up).
    let (cp2_passed, cp2_failed, cp2_down, cp2_up) = (
        "Health check for server kube-apiservers/cp-2 succeeded",
        "Health check for server kube-apiservers/cp-2 failed",
        "Server kube-apiservers/cp-2 is DOWN",
        "Server kube-apiservers/cp-2 is UP",
    );
    for cp in ["cp-1", "cp-2"] {
        let passed = format!("Health check for server kube-apiservers/{cp} succeeded");
        wait_for_log(&lb, &passed, 0, Duration::from_secs(8));
    }

    // An apiserver answers 500 on /readyz for about 10 s while another control-plane node
    // joins: the checks see it, and the server stays in.
    let passed = haproxy_logged(&lb, cp2_passed);
    std::fs::write(unready("cp-2"), "").unwrap();
    std::thread::sleep(Duration::from_secs(10));
    std::fs::remove_file(unready("cp-2")).unwrap();
    wait_for_log(&lb, cp2_passed, passed, Duration::from_secs(8));
    assert!(
        haproxy_logged(&lb, cp2_failed) > 0 && haproxy_logged(&lb, cp2_down) == 0,
        "the checks saw the 500s, and a 10 s blip did not take cp-2 out:\n{}",
        lb.log("main")
    );

    // An apiserver that stops is taken out within the check window (4 checks 5 s apart), and
    // then no request reaches it.
    tenant.stop(cp2);
    let down = wait_for_log(&lb, cp2_down, 0, Duration::from_secs(25));
    eprintln!("figure: cp-2 marked down {down:.1?} after it stopped (inter 5s, fall 4)");
    let seen = answers(&lb, frontend, 10);
    assert!(
        seen.iter().all(|s| s == "cp-1"),
        "only cp-1 once cp-2 is down: {seen:?}"
    );

    // Back, it is rechecked every 2 s and returns after 2 good checks (the figure includes the
    // stand-in's start).
    start_apiserver(&mut tenant, "cp-2", HOSTS[1].2);
    let up = wait_for_log(&lb, cp2_up, 0, Duration::from_secs(15));
    eprintln!("figure: cp-2 back in {up:.1?} after it restarted (downinter 2s, rise 2)");
    let seen = answers(&lb, frontend, 8);
    assert!(
        seen.iter().any(|s| s == "cp-2"),
        "cp-2 serves again: {seen:?}"
    );
}

#[tokio::test]
async fn the_worker_balancer_forwards_every_port_to_every_worker() {
    let (_env, pod, _keys, ready) =
        match ready_tenant("fn-lb-wk", ServiceKind::LoadBalancerWorker).await {
            Some(tenant) => tenant,
            None => return,
        };
    let range = ready.spec.services.load_balancer_worker[0].node_port_range;
    let ports: Vec<u16> = (range.start..=range.end).collect();
    let mut lb = Sandbox::start("lb-worker", None);
    let mut tenant = tenant_side(&lb);
    let fake = repo_path("tests/integration/fixtures/fake_backend.py");
    for (name, _, ip, _) in &HOSTS[2..] {
        let listen: Vec<String> = ports.iter().map(|p| format!("--listen {ip}:{p}")).collect();
        let script = format!(
            "python3 {} --name {name} {}",
            fake.display(),
            listen.join(" ")
        );
        tenant.spawn(&format!("node-ports-{name}"), &script);
        wait_listening(&tenant, &format!("node-ports-{name}"));
    }
    pod.run(&mut lb, &[]);
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}/");
        lb.wait_until(
            "haproxy forwarding to a worker",
            Duration::from_secs(20),
            &format!("curl -sS --max-time 2 {url}"),
        );
        let seen = answers(&lb, &url, 6);
        for wk in ["wk-1", "wk-2"] {
            assert!(
                seen.iter().any(|s| s == wk),
                "port {port} reaches {wk}: {seen:?}"
            );
        }
    }
}

/// The exec-form `ENTRYPOINT` of a Dockerfile of the repository.
fn image_entrypoint(dockerfile: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_path(dockerfile)).unwrap();
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap_or_else(|| panic!("{dockerfile} has no ENTRYPOINT"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{dockerfile}: ENTRYPOINT {line}: {e}"))
}

#[tokio::test]
async fn the_jump_host_logs_users_in_reaches_nodes_and_powers_hosts() {
    let (env, pod, keys, _) = match ready_tenant("fn-jump", ServiceKind::JumpHost).await {
        Some(tenant) => tenant,
        None => return,
    };
    let rootfs = repo_path("images/jump-host/rootfs");
    let mut jump = Sandbox::start(
        "jump-host",
        Some(Image {
            rootfs: &rootfs,
            setup: "/usr/local/sbin/sip-jump-host-setup",
        }),
    );
    let mut tenant = tenant_side(&jump);
    TENANT.start_bmcs(&mut tenant);
    TENANT.start_nodes(&mut tenant, &keys.node.1);
    let entrypoint = image_entrypoint("images/jump-host/Dockerfile");
    let entrypoint: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    pod.run(&mut jump, &entrypoint);
    jump.wait_until(
        "the jump host's sshd",
        Duration::from_secs(30),
        "ssh-keyscan -T 1 127.0.0.1 >/dev/null 2>&1",
    );
    let ssh = |key: &str, command: &str| {
        jump.sh(&format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR ubuntu@127.0.0.1 {}",
            quote(key),
            quote(command)
        ))
    };
    let ok = |command: &str| {
        let out = ssh(&keys.user.0, command);
        assert!(
            out.status.success(),
            "as the user, `{command}` failed:\n{}{}\nsshd's log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            jump.log("main")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    assert_eq!(ok("id -un").trim(), "ubuntu");

    // The host key is the one the operator made and keeps in the jump host's Secret.
    let kept =
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), &env.namespace)
            .get(&sip::services::host_key_secret_name(&object_name(
                CLUSTER,
                ServiceId {
                    kind: ServiceKind::JumpHost,
                    index: 0,
                },
            )))
            .await
            .unwrap();
    let public =
        String::from_utf8(kept.data.unwrap()["ssh_host_ed25519_key.pub"].0.clone()).unwrap();
    let served = jump.sh_ok("ssh-keyscan -T 2 -t ed25519 127.0.0.1 2>/dev/null");
    let key_of = |line: &str| {
        line.split_whitespace()
            .skip_while(|w| !w.starts_with("ssh-"))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        key_of(&served),
        key_of(&public),
        "served {served}, kept {public}"
    );

    // TCP forwarding reaches a member's ssh port and nothing else (not the jump host's own
    // network, not the API server's).
    let forward = |target: &str| {
        jump.sh(&format!(
            "timeout 10 ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -W {target} ubuntu@127.0.0.1 </dev/null",
            quote(&keys.user.0),
        ))
    };
    let member = forward("192.0.2.22:22");
    assert!(
        String::from_utf8_lossy(&member.stdout).starts_with("SSH-2.0-"),
        "a member's sshd answers through the jump host: {member:?}"
    );
    for target in ["127.0.0.1:22", "192.0.2.22:80", "10.96.0.1:443"] {
        let refused = forward(target);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && said.contains("stdio forwarding failed"),
            "{target} is not forwarded: {said}"
        );
        // Denied by sshd's policy, not unreachable.
        let (host, port) = target.split_once(':').unwrap();
        assert!(
            jump.log("main").contains(&format!(
                "to connect to host {host} port {port}, but the request was denied"
            )),
            "sshd denied {target}:\n{}",
            jump.log("main")
        );
    }
    let refused = ssh(&keys.stranger.0, "true");
    assert!(!refused.status.success(), "a key not listed is refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Permission denied (publickey)"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // From the jump host, every node by name, with the node key.
    for (name, _, ip, _) in HOSTS {
        let reached = ok(&format!("ssh {name} 'id -un; echo $SSH_CONNECTION'"));
        assert!(
            reached.starts_with("ubuntu\n") && reached.contains(&format!(" {ip} 22")),
            "{name} at {ip}: {reached}"
        );
    }
    let via_script = ok("sip-hosts ssh wk-2 'echo $SSH_CONNECTION'");
    assert!(via_script.contains(" 192.0.2.22 22"), "{via_script}");

    let list = ok("sip-hosts list");
    for (name, _, ip, system) in HOSTS {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name}\t"))
                && l.contains(ip)
                && l.contains(system)),
            "{name}: {list}"
        );
    }

    // Power, through each host's own BMC credentials.
    assert_eq!(ok("sip-hosts status cp-1").trim(), "On");
    assert_eq!(
        ok("sip-hosts power-off cp-1").trim(),
        "cp-1: GracefulShutdown requested"
    );
    TENANT.wait_for_power(&tenant, 0, "Off");
    assert_eq!(ok("sip-hosts status cp-1").trim(), "Off");
    ok("sip-hosts power-on cp-1");
    TENANT.wait_for_power(&tenant, 0, "On");
    assert_eq!(
        ok("sip-hosts reboot wk-1").trim(),
        "wk-1: GracefulRestart requested"
    );
    assert_eq!(
        ok("sip-hosts reboot --force wk-2").trim(),
        "wk-2: ForceRestart requested"
    );
    let bmc_log = tenant.log("bmc");
    for (host, reset) in [(2, "GracefulRestart"), (3, "ForceRestart")] {
        let (name, _, _, system) = HOSTS[host];
        assert!(
            bmc_log.contains(&format!(
                "System \"{system}\" power state set to \"{reset}\""
            )),
            "{name}: {reset} reaches the BMC:\n{bmc_log}"
        );
        // The emulator turns a restart into Off at once and On a few seconds later.
        TENANT.wait_for_power(&tenant, host, "On");
    }
}

//! Nothing a test starts outlives it: a sandbox's processes end with the sandbox, however they
//! were started (forked by a shell, switched to another user, which clears a parent-death
//! signal, or in a session of their own, as the services' daemons are), at a test's end and at
//! its panic, and the sandbox's network namespace goes with them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sandbox::Sandbox;

/// A daemon as the pod runner starts one: a shell that forks, one child as another user, one
/// in its own session, as haproxy and sshd end up.
const DAEMON: &str = "sh -c 'setpriv --reuid 65534 --regid 65534 --clear-groups sleep 600 & \
                      setsid sleep 600 & sleep 600'";

/// The host's PIDs of the sandbox's processes once the daemon's three sleeps run, and the
/// sandbox's network namespace.
fn started(sandbox: &mut Sandbox) -> (Vec<u32>, PathBuf) {
    sandbox.spawn("daemon", DAEMON);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let processes = sandbox.processes();
        let sleeps = processes
            .iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c == "sleep\x00600\x00")
            })
            .count();
        if sleeps == 3 {
            let net = std::fs::read_link(format!("/proc/{}/ns/net", processes[0])).unwrap();
            return (processes, net);
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's three sleeps did not start within 10 s (processes {processes:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails naming what is still alive: a process of `pids`, or any process in `net`.
fn assert_gone(pids: &[u32], net: &Path, when: &str) {
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(
        alive.is_empty(),
        "{when}: processes {alive:?} outlived the sandbox"
    );
    let in_net: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|n| n == net))
        .collect();
    assert!(
        in_net.is_empty(),
        "{when}: processes {in_net:?} are still in the sandbox's network namespace {}",
        net.display()
    );
}

#[test]
fn a_sandboxed_service_ends_with_its_sandbox() {
    let mut sandbox = Sandbox::start("leak-drop", None);
    let (pids, net) = started(&mut sandbox);
    assert!(pids.len() >= 5, "init, shell and three sleeps: {pids:?}");
    drop(sandbox);
    assert_gone(&pids, &net, "after the sandbox was dropped");
}

#[test]
fn a_sandboxed_service_ends_when_its_test_panics() {
    let seen = std::sync::Mutex::new(None);
    let outcome = std::panic::catch_unwind(|| {
        let mut sandbox = Sandbox::start("leak-panic", None);
        *seen.lock().unwrap() = Some((started(&mut sandbox), sandbox.dir.clone()));
        panic!("a test fails with its services running");
    });
    assert!(outcome.is_err());
    let ((pids, net), dir) = seen.into_inner().unwrap().expect("the sandbox started");
    assert_gone(&pids, &net, "after the test panicked");
    // A panicking test's sandbox directory is kept for a look; this panic was on purpose.
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_stopped_daemon_takes_what_it_forked_with_it() {
    let mut sandbox = Sandbox::start("leak-stop", None);
    let (pids, _) = started(&mut sandbox);
    sandbox.stop(0);
    let left = sandbox.processes();
    assert_eq!(
        left.len(),
        1,
        "only the namespace's first process is left after stop; still there: {left:?} (was {pids:?})"
    );
}

//! The operator's client speaks HTTP/2 to kube-apiserver: its watches, its Lease and every
//! request share one connection instead of one each (kube's default client speaks HTTP/1.1,
//! and a TLS handshake cost more than the requests it carried).

use std::collections::HashSet;

use kube::api::{Api, PostParams};
use sip::api::{Phase, SIPCluster};

use crate::common::{load_hosts, phase, test_env, wait_for};
use crate::resume::{Operator, resumable};

/// Inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the operator's fds")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Established TCP connections to `port` among `inodes`, from /proc/net/tcp{,6}.
fn established_to(port: u16, inodes: &HashSet<u64>) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let remote_port = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let inode: u64 = inode.parse().unwrap_or(0);
            // 01: ESTABLISHED.
            if remote_port == Some(port) && *state == "01" && inodes.contains(&inode) {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn the_operator_shares_one_connection_to_the_api_server() {
    let env = test_env("connections").await;
    load_hosts(&env).await;
    let operator = Operator::start(&env);
    let api: Api<SIPCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &resumable(&env, "tenant"))
        .await
        .unwrap();
    wait_for(&api, "tenant", "Ready", |c| phase(c) == Some(Phase::Ready)).await;

    let port: u16 = env
        .cp
        .server
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("the API server's port");
    let connections = established_to(port, &socket_inodes(operator.pid()));
    // Six watches, the Lease and the requests of a reconcile: over HTTP/1.1 that is at least
    // seven connections. Watches started at the same instant may each open one before the
    // first has said it speaks h2; the pool then keeps using the first.
    assert!(
        (1..=2).contains(&connections),
        "the operator holds {connections} connections to the API server"
    );
    operator.kill();
}

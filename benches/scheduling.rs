//! Gathering's decision over large inventories: `cargo bench --bench scheduling`.
//!
//! Pools of 1,000 to 100,000 hosts across 100 racks, two hosts per physical server, one in ten a
//! control-plane host and one in seven already claimed by another cluster. The cluster wants
//! 3 control-plane hosts (one per rack) and 5 workers (one per server): "expand" chooses them
//! from an empty ledger, "contract" shrinks a full ledger to 1 + 2.

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use sip::api::{HostRecord, HostState, NodeCount, NodeRole, NodeSet, SIPClusterSpec};
use sip::scheduling::{ClusterKey, HostKey, HostView, Inputs, schedule};

const FLAVOR: &str = "vino.airshipit.org/flavor";
const RACK: &str = "vino.airshipit.org/rack";
const SERVER: &str = "vino.airshipit.org/host";

type Claims = HashSet<HostKey, foldhash::fast::RandomState>;

fn pool(n: usize) -> (Vec<HostView>, Claims) {
    let hosts: Vec<HostView> = (0..n)
        .map(|i| {
            let flavor = if i % 10 == 0 {
                "control-plane"
            } else {
                "worker"
            };
            let mut labels = BTreeMap::new();
            labels.insert(FLAVOR.to_string(), flavor.to_string());
            labels.insert(RACK.to_string(), format!("rack-{:03}", i % 100));
            labels.insert(SERVER.to_string(), format!("server-{:06}", i / 2));
            HostView {
                key: HostKey::new("metal3", format!("host-{i:06}")),
                uid: Some(format!("uid-{i}")),
                labels: labels.into(),
                deleting: false,
                paused: false,
                errored: false,
                unhealthy: false,
                release_requested: false,
                has_network_data: true,
                consumer: None,
            }
        })
        .collect();
    let claimed = hosts.iter().step_by(7).map(|h| h.key.clone()).collect();
    (hosts, claimed)
}

fn role(flavor: &str, topology: &str, active: u32, standby: u32) -> NodeSet {
    NodeSet {
        label_selector: LabelSelector {
            match_labels: Some([(FLAVOR.to_string(), flavor.to_string())].into()),
            match_expressions: None,
        },
        topology_key: Some(topology.to_string()),
        count: Some(NodeCount { active, standby }),
    }
}

fn spec(cp: (u32, u32), worker: (u32, u32)) -> SIPClusterSpec {
    SIPClusterSpec {
        nodes: [
            (
                NodeRole::ControlPlane,
                role("control-plane", RACK, cp.0, cp.1),
            ),
            (NodeRole::Worker, role("worker", SERVER, worker.0, worker.1)),
        ]
        .into(),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let cluster = ClusterKey::new("tenant", "bench");
    let mut group = c.benchmark_group("schedule");
    group.sample_size(20);
    for n in [1_000, 10_000, 100_000] {
        let (hosts, claimed) = pool(n);
        group.throughput(Throughput::Elements(n as u64));

        let full = spec((2, 1), (4, 1));
        let expand = |ledger: &[HostRecord], spec: &SIPClusterSpec| {
            schedule(&Inputs {
                cluster: &cluster,
                spec,
                ledger,
                hosts: &hosts,
                claimed_elsewhere: &claimed,
                claimable: None,
            })
        };
        let first = expand(&[], &full);
        assert!(
            first.is_schedulable(),
            "the benchmark pool must fit the cluster"
        );
        let ledger: Vec<HostRecord> = first
            .apply_to(&[])
            .into_iter()
            .map(|mut r| {
                r.state = HostState::Labeled;
                r
            })
            .collect();
        assert_eq!(ledger.len(), 8);

        group.bench_with_input(BenchmarkId::new("expand", n), &n, |b, _| {
            b.iter(|| black_box(expand(&[], &full)))
        });
        let small = spec((1, 0), (2, 0));
        group.bench_with_input(BenchmarkId::new("contract", n), &n, |b, _| {
            b.iter(|| black_box(expand(&ledger, &small)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! A warm operator's steady state, after the warm sequence: what metal3's status churn and
//! pokes at Ready clusters cost it. These are the workloads the controller's in-process
//! memories are for (ARCHITECTURE.md, "What the controller remembers"): the bench prints the
//! requests and CPU each costs, so a memory's saving is the difference with it switched off
//! (`tools/memories/measure.sh`).

use std::time::{Duration, Instant};

use anyhow::Result;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sip::api::{BareMetalHost, SIPCluster};

use super::{Operator, http_get, per_cluster, show};

/// Status updates of hosts, spread over the pool: what metal3 writes while it inspects,
/// provisions and polls power state. Nothing in them is what sip reads.
const STATUS_UPDATES: usize = 500;
/// Pokes of each Ready cluster (an annotation: a new resourceVersion, the same generation).
const POKES: usize = 4;

pub async fn run(
    client: &kube::Client,
    ns: &str,
    operator: &Operator,
    (hosts, clusters): (usize, &[String]),
) -> Result<()> {
    println!("   steady state after it:");
    let hosts_api: Api<BareMetalHost> = Api::namespaced(client.clone(), ns);
    let (before, cpu_before) = (metrics(operator).await, operator.usage().1);
    let started = Instant::now();
    for i in 0..STATUS_UPDATES {
        let status = json!({"status": {
            "operationalStatus": "OK",
            "lastUpdated": format!("2026-12-07T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
            "poweredOn": i % 2 == 0,
        }});
        // Spread over the pool, members of the Ready clusters among them.
        let name = format!("host-{:05}", i * 7 % hosts);
        hosts_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    let took = started.elapsed();
    settle().await;
    let (after, cpu_after) = (metrics(operator).await, operator.usage().1);
    println!(
        "     {STATUS_UPDATES} host status updates in {:.1} s: the operator's requests {}, CPU {:.2} s",
        took.as_secs_f64(),
        show(&per_cluster(&after, &before, "sip_api_requests_total", 1)),
        cpu_after - cpu_before
    );

    let clusters_api: Api<SIPCluster> = Api::namespaced(client.clone(), ns);
    let (before, cpu_before) = (metrics(operator).await, operator.usage().1);
    for round in 0..POKES {
        for name in clusters {
            let poke = json!({"metadata": {"annotations": {"bench/poke": round.to_string()}}});
            clusters_api
                .patch(name, &PatchParams::default(), &Patch::Merge(&poke))
                .await?;
        }
        // Each poke's turn runs before the next round's.
        settle().await;
    }
    let (after, cpu_after) = (metrics(operator).await, operator.usage().1);
    let pokes = POKES * clusters.len();
    println!(
        "     {pokes} pokes of Ready clusters: per poke, the operator's requests {}, CPU {:.1} ms",
        show(&per_cluster(
            &after,
            &before,
            "sip_api_requests_total",
            pokes
        )),
        (cpu_after - cpu_before) * 1000.0 / pokes as f64
    );
    Ok(())
}

async fn metrics(operator: &Operator) -> String {
    http_get(operator.admin, "/metrics").await
}

/// Long enough for the turns and Events the last write started to finish.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

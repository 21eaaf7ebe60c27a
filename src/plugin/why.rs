//! `kubectl sip why`: a cluster's story on one screen: its phase, its conditions (whose
//! messages name the fix), the last transitions, the hosts its ledger marks unusable, and the
//! recent Warning Events about it.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;

use crate::api::{HostState, SIPCluster};

use super::plan::columns;

/// Transitions shown: the rest is in `kubectl get sipcluster -o yaml`.
const RECENT: usize = 8;

/// The story of `cluster`, with `events` (those about it, any order).
pub fn story(cluster: &SIPCluster, events: &[Event]) -> String {
    let mut out = String::new();
    let name = format!(
        "{}/{}",
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
        cluster.metadata.name.as_deref().unwrap_or_default()
    );
    let Some(status) = &cluster.status else {
        let _ = writeln!(
            out,
            "SIPCluster {name}: no status yet: no operator has served it (is sip running, and does it watch this namespace?)"
        );
        return out;
    };
    let phase = status.phase.map_or("(none)", |p| p.as_str());
    let _ = writeln!(out, "SIPCluster {name}: {phase}");
    if cluster.metadata.deletion_timestamp.is_some() {
        let _ = writeln!(
            out,
            "Being deleted: its services and host labels are removed first."
        );
    }
    let _ = writeln!(out, "\nConditions:");
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "  {}={} {}: {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    let unusable: Vec<_> = status
        .hosts
        .iter()
        .filter(|h| h.state == HostState::Unusable)
        .collect();
    if !unusable.is_empty() {
        let _ = writeln!(out, "\nHosts found unusable (chosen again once fixed):");
        for h in unusable {
            let why = h.reason.as_deref().unwrap_or("no reason recorded");
            let _ = writeln!(
                out,
                "  {}/{} ({}): {why}",
                h.namespace,
                h.name,
                h.role.as_str()
            );
        }
    }
    let members = status.hosts.iter().filter(|h| h.state.is_member()).count();
    let _ = writeln!(
        out,
        "\nMembers: {members} ({} records in the ledger)",
        status.hosts.len()
    );
    let _ = writeln!(out, "\nRecent transitions:");
    let mut table = vec![["TIME", "FROM", "TO", "REASON", "MESSAGE"].map(String::from)];
    let start = status.history.len().saturating_sub(RECENT);
    for t in &status.history[start..] {
        table.push([
            stamp(&t.time),
            t.from.map_or("-", |p| p.as_str()).into(),
            t.to.as_str().into(),
            t.reason.clone(),
            t.message.clone(),
        ]);
    }
    out.push_str(&indent(&columns(&table)));
    let mut warnings: Vec<&Event> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    warnings.sort_by_key(|e| last_seen(e));
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nRecent warnings:");
        for e in warnings.iter().rev().take(5).rev() {
            let _ = writeln!(
                out,
                "  {} (x{}): {}",
                e.reason.as_deref().unwrap_or_default(),
                e.count.unwrap_or(1),
                e.message.as_deref().unwrap_or_default()
            );
        }
    }
    out
}

/// When an Event was last seen, by whichever field its writer filled.
fn last_seen(e: &Event) -> String {
    e.last_timestamp
        .as_ref()
        .map(stamp)
        .or_else(|| e.event_time.as_ref().map(stamp))
        .unwrap_or_default()
}

/// A time as the API writes it (RFC 3339), whatever time type the bindings use.
fn stamp(t: &impl serde::Serialize) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

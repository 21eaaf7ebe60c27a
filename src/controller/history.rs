//! The status's memory of the story: bounded transition history and the claimed/wanted
//! summaries `kubectl get` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::sipcluster::HISTORY_LIMIT;
use crate::api::{NodeRole, Phase, SIPClusterSpec, SIPClusterStatus, TransitionRecord};

/// Appends a transition, dropping the oldest beyond the schema's bound.
pub fn record(
    status: &mut SIPClusterStatus,
    from: Option<Phase>,
    to: Phase,
    reason: &str,
    message: &str,
    now: &Time,
) {
    status.history.push(TransitionRecord {
        time: now.clone(),
        from,
        to,
        reason: reason.to_string(),
        message: message.to_string(),
    });
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
}

/// "claimed/wanted" for each role, from the ledger's members.
pub fn summarize(status: &mut SIPClusterStatus, spec: &SIPClusterSpec) {
    let line = |role: NodeRole| {
        let claimed = status
            .hosts
            .iter()
            .filter(|h| h.role == role && h.state.is_member())
            .count();
        let wanted = spec.nodes.get(&role).map_or(0, |s| s.wanted());
        format!("{claimed}/{wanted}")
    };
    status.control_plane = Some(line(NodeRole::ControlPlane));
    status.workers = Some(line(NodeRole::Worker));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_latest_within_the_bound() {
        let mut s = SIPClusterStatus::default();
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        for i in 0..HISTORY_LIMIT + 5 {
            record(&mut s, None, Phase::Gathering, &format!("R{i}"), "", &now);
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(s.history[0].reason, "R5");
        assert_eq!(
            s.history.last().unwrap().reason,
            format!("R{}", HISTORY_LIMIT + 4)
        );
    }
}

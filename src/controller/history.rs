//! The status's memory of the story: the log of transitions (bounded), which the phase is the
//! fold of, and the claimed/wanted summaries `kubectl get` shows.

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

/// Where the log leads: the phase after its last transition, found by replaying it. A log
/// whose records do not join up (a record whose `from` is not where the previous one led) lost
/// a transition: the gap is returned, as `(index, expected from, found from)`. The oldest
/// record may start anywhere (the log is bounded; the status before it is the snapshot).
pub fn fold(
    log: &[TransitionRecord],
) -> Result<Option<Phase>, (usize, Option<Phase>, Option<Phase>)> {
    let mut at: Option<Phase> = log.first().and_then(|r| r.from);
    for (i, record) in log.iter().enumerate() {
        if record.from != at {
            return Err((i, at, record.from));
        }
        at = Some(record.to);
    }
    Ok(at)
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

    fn log(steps: &[(Option<Phase>, Phase)]) -> Vec<TransitionRecord> {
        let mut s = SIPClusterStatus::default();
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        for (from, to) in steps {
            record(&mut s, *from, *to, "R", "", &now);
        }
        s.history
    }

    #[test]
    fn the_phase_is_the_fold_of_the_log() {
        use Phase::*;
        let created = [
            (None, Gathering),
            (Some(Gathering), Extracting),
            (Some(Extracting), DeployingInfra),
            (Some(DeployingInfra), Labeling),
            (Some(Labeling), Ready),
        ];
        assert_eq!(fold(&log(&created)), Ok(Some(Ready)));
        let mut scaled = created.to_vec();
        scaled.extend([(Some(Ready), Gathering), (Some(Gathering), Decommissioning)]);
        assert_eq!(fold(&log(&scaled)), Ok(Some(Decommissioning)));
        assert_eq!(fold(&[]), Ok(None), "nothing happened yet");
        let truncated = &log(&created)[2..];
        assert_eq!(
            fold(truncated),
            Ok(Some(Ready)),
            "a bounded log starts anywhere"
        );
        let gap = [(None, Gathering), (Some(Extracting), DeployingInfra)];
        assert_eq!(
            fold(&log(&gap)),
            Err((1, Some(Gathering), Some(Extracting))),
            "a lost transition is found"
        );
    }

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

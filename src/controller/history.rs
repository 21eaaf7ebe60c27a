//! The status's memory of the story: the log of transitions (bounded, with a checkpoint of
//! what it dropped), whose events replayed through the machine give the phase, and the
//! claimed/wanted summaries `kubectl get` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::sipcluster::HISTORY_LIMIT;
use crate::api::{
    HistoryCheckpoint, NodeRole, Phase, SIPClusterSpec, SIPClusterStatus, TransitionRecord,
};
use crate::machine;

/// Appends a transition (its `event` the machine's input); beyond the schema's bound the oldest
/// entries are dropped into the checkpoint (their replay), so the rest still replays.
pub fn record(status: &mut SIPClusterStatus, entry: TransitionRecord) {
    status.history.push(entry);
    bound(status);
}

/// Drops the entries beyond the schema's bound, oldest first, into the checkpoint.
fn bound(status: &mut SIPClusterStatus) {
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    if excess == 0 {
        return;
    }
    let start = status.history_checkpoint.as_ref().map(|c| c.phase);
    let dropped: Vec<TransitionRecord> = status.history.drain(..excess).collect();
    // A dropped prefix that does not replay (records from before events were kept, edited by
    // hand) still ends where its last record says.
    let phase = match replay_from(start, &dropped) {
        Ok(Some(phase)) => phase,
        _ => dropped[excess - 1].to,
    };
    let transitions = status
        .history_checkpoint
        .as_ref()
        .map_or(0, |c| c.transitions)
        .saturating_add(excess as u32);
    status.history_checkpoint = Some(HistoryCheckpoint { phase, transitions });
}

/// Where a log stops replaying: the record at `index` expected the cluster in `expected`
/// (or its event leads elsewhere than it says), found `found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub index: usize,
    pub expected: Option<Phase>,
    pub found: Option<Phase>,
}

/// The phase the status's history replays to: from the checkpoint (or the machine's start),
/// each record's event handed to the machine in turn. `Ok(None)`: nothing happened yet.
pub fn replay(status: &SIPClusterStatus) -> Result<Option<Phase>, Gap> {
    replay_from(start(status), &status.history)
}

/// Where the replay of the status's log starts: its checkpoint, or the machine's start.
fn start(status: &SIPClusterStatus) -> Option<Phase> {
    match (&status.history_checkpoint, status.history.first()) {
        (Some(checkpoint), _) => Some(checkpoint.phase),
        // A log bounded before checkpoints were kept starts where its oldest record does.
        (None, Some(first)) if first.event.is_none() => first.from,
        (None, _) => None,
    }
}

fn replay_from(start: Option<Phase>, log: &[TransitionRecord]) -> Result<Option<Phase>, Gap> {
    let mut at = start;
    for (index, record) in log.iter().enumerate() {
        if record.from != at {
            return Err(Gap {
                index,
                expected: at,
                found: record.from,
            });
        }
        if let Some(event) = record.event {
            let next = machine::after(at, event);
            if next != record.to {
                return Err(Gap {
                    index,
                    expected: Some(next),
                    found: Some(record.to),
                });
            }
        }
        at = Some(record.to);
    }
    Ok(at)
}

/// The status a turn starts from: its phase is its history's replay. A status whose phase
/// disagrees with its log (edited by hand, say) resumes where the log leads; one whose log
/// does not replay keeps its phase, and its log is repaired so that it replays there (the
/// repair is written with the turn's status, so the warning is given once, not every turn);
/// one with no log (the predecessor's) keeps its phase.
pub fn resumed(mut status: SIPClusterStatus) -> SIPClusterStatus {
    match replay(&status) {
        Ok(Some(phase)) if status.phase != Some(phase) => {
            tracing::warn!(
                written = ?status.phase,
                replayed = %phase,
                "the status's phase disagrees with its history; resuming where the history leads"
            );
            status.phase = Some(phase);
        }
        Ok(_) => {}
        Err(gap) => {
            tracing::warn!(
                ?gap,
                phase = ?status.phase,
                "the status's history does not replay; resuming at its phase, the history bridged \
                 where it was broken"
            );
            repair(&mut status);
        }
    }
    status
}

const REPAIRED: &str = "HistoryRepaired";

/// Makes a log that does not replay replay to the status's phase, keeping every record: where
/// a record does not start where the log so far leads, a record without an event bridges the
/// two (a record "from nothing" instead starts where the log leads); a record whose event
/// leads elsewhere than it says keeps what it says, without the event; a log that ends
/// elsewhere than the phase is bridged to it.
fn repair(status: &mut SIPClusterStatus) {
    let mut at = start(status);
    let mut log = Vec::with_capacity(status.history.len() + 1);
    for mut record in std::mem::take(&mut status.history) {
        match record.from {
            Some(from) if at != Some(from) => {
                log.push(bridge(at, from, record.time.clone()));
                at = Some(from);
            }
            Some(_) => {}
            // "From nothing" after the start: no bridge leads there; it starts where the log is.
            None => record.from = at,
        }
        if record
            .event
            .is_some_and(|e| machine::after(at, e) != record.to)
        {
            record.event = None;
        }
        at = Some(record.to);
        log.push(record);
    }
    match status.phase {
        Some(phase) if at != Some(phase) => {
            log.push(bridge(at, phase, Time(k8s_openapi::jiff::Timestamp::now())));
        }
        Some(_) => {}
        // No phase is a cluster never worked; one with a log is where the log leads.
        None => status.phase = at,
    }
    status.history = log;
    bound(status);
}

fn bridge(from: Option<Phase>, to: Phase, time: Time) -> TransitionRecord {
    let was = from.map_or("nothing".to_string(), |p| p.to_string());
    TransitionRecord {
        time,
        event: None,
        from,
        to,
        reason: REPAIRED.into(),
        message: format!("the history did not lead from {was} to {to} (edited by hand?)"),
    }
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
mod tests;

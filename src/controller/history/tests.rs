use proptest::prelude::*;

use super::*;
use crate::api::SIPClusterStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::machine::Event;

fn epoch() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Hands `events` to the machine as the controller does: a transition that moves is recorded
/// with its event and becomes the phase. Returns the status and how many moved.
fn run(events: &[Event]) -> (SIPClusterStatus, usize) {
    let mut status = SIPClusterStatus::default();
    let mut moved = 0;
    for &event in events {
        let to = machine::after(status.phase, event);
        if status.phase != Some(to) {
            let entry = entry((status.phase, to), event, "R");
            record(&mut status, entry);
            status.phase = Some(to);
            moved += 1;
        }
    }
    (status, moved)
}

/// A log entry at the epoch, with no message.
fn entry((from, to): (Option<Phase>, Phase), event: Event, reason: &str) -> TransitionRecord {
    TransitionRecord {
        time: epoch(),
        event: Some(event),
        from,
        to,
        reason: reason.into(),
        message: String::new(),
    }
}

fn event() -> impl Strategy<Value = Event> {
    proptest::sample::select(Event::ALL.to_vec())
}

proptest! {
    /// Whatever happened, and however much of it the bounded log dropped, the phase is the
    /// replay of the recorded events through the machine from the checkpoint.
    #[test]
    fn the_phase_is_the_replay_of_the_recorded_events(events in proptest::collection::vec(event(), 0..200)) {
        let (status, moved) = run(&events);
        prop_assert_eq!(replay(&status), Ok(status.phase));
        prop_assert!(status.history.len() <= HISTORY_LIMIT);
        let dropped = status.history_checkpoint.as_ref().map_or(0, |c| c.transitions as usize);
        prop_assert_eq!(dropped + status.history.len(), moved, "every transition is kept or counted");
        prop_assert!(status.history.iter().all(|r| r.event.is_some()));
    }
}

#[test]
fn a_long_story_replays_from_its_checkpoint() {
    use Event::*;
    // Created, then forty rounds of drift repaired (Ready -> DeployingInfra -> Labeling -> Ready).
    let mut events = vec![Created, Done, Done, Done, Done];
    for _ in 0..40 {
        events.extend([Drift, Done, Done]);
    }
    events.push(Deleting);
    let (status, moved) = run(&events);
    assert_eq!(moved, 4 + 1 + 120 + 1);
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    let checkpoint = status.history_checkpoint.clone().expect("a checkpoint");
    assert_eq!(checkpoint.transitions as usize, moved - HISTORY_LIMIT);
    assert_eq!(
        Some(checkpoint.phase),
        status.history[0].from,
        "the kept log starts where the dropped part led"
    );
    assert_eq!(replay(&status), Ok(Some(Phase::Decommissioning)));
    // Without its checkpoint the kept log cannot be replayed: it does not start at the start.
    let mut lost = status.clone();
    lost.history_checkpoint = None;
    assert!(replay(&lost).is_err());
}

fn legacy(steps: &[(Option<Phase>, Phase)]) -> Vec<TransitionRecord> {
    steps
        .iter()
        .map(|&(from, to)| TransitionRecord {
            time: epoch(),
            event: None,
            from,
            to,
            reason: "R".into(),
            message: String::new(),
        })
        .collect()
}

#[test]
fn records_without_events_replay_by_where_they_lead() {
    use Phase::*;
    let created = [
        (None, Gathering),
        (Some(Gathering), Extracting),
        (Some(Extracting), DeployingInfra),
        (Some(DeployingInfra), Labeling),
        (Some(Labeling), Ready),
    ];
    let whole = SIPClusterStatus {
        history: legacy(&created),
        ..Default::default()
    };
    assert_eq!(replay(&whole), Ok(Some(Ready)));
    let truncated = SIPClusterStatus {
        history: legacy(&created[2..]),
        ..Default::default()
    };
    assert_eq!(
        replay(&truncated),
        Ok(Some(Ready)),
        "bounded before checkpoints"
    );
    assert_eq!(
        replay(&SIPClusterStatus::default()),
        Ok(None),
        "nothing yet"
    );
    let gap = SIPClusterStatus {
        history: legacy(&[(None, Gathering), (Some(Extracting), DeployingInfra)]),
        ..Default::default()
    };
    assert_eq!(
        replay(&gap),
        Err(Gap {
            index: 1,
            expected: Some(Gathering),
            found: Some(Extracting)
        }),
        "a lost transition is found"
    );
}

#[test]
fn a_record_whose_event_leads_elsewhere_does_not_replay() {
    let (mut status, _) = run(&[Event::Created, Event::Done]);
    // Done from Gathering leads to Extracting; the record claims Ready.
    status.history[1].to = Phase::Ready;
    assert_eq!(
        replay(&status),
        Err(Gap {
            index: 1,
            expected: Some(Phase::Extracting),
            found: Some(Phase::Ready)
        })
    );
}

#[test]
fn a_turn_resumes_where_the_history_leads() {
    let (status, _) = run(&[Event::Created, Event::Done, Event::Done]);
    assert_eq!(status.phase, Some(Phase::DeployingInfra));
    let mut edited = status.clone();
    edited.phase = Some(Phase::Ready);
    assert_eq!(
        resumed(edited).phase,
        Some(Phase::DeployingInfra),
        "a phase edited by hand does not skip the work"
    );
    // The predecessor's status: conditions only, no history. Its phase (none) stays.
    let predecessor = SIPClusterStatus::default();
    assert_eq!(resumed(predecessor.clone()), predecessor);
    // A log that does not replay: the written phase stands, and the log is bridged where it
    // broke, so the next turn replays it without a warning.
    let mut broken = status.clone();
    broken.history[1].from = Some(Phase::Labeling);
    let repaired = resumed(broken.clone());
    assert_eq!(repaired.phase, Some(Phase::DeployingInfra));
    assert_eq!(replay(&repaired), Ok(Some(Phase::DeployingInfra)));
    let reasons: Vec<&str> = repaired.history.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["R", "HistoryRepaired", "R", "R"]);
    assert_eq!(
        repaired.history[1].message,
        "the history did not lead from Gathering to Labeling (edited by hand?)"
    );
    assert_eq!(resumed(repaired.clone()), repaired, "repaired once");
}

/// Hand edits of a log: a record's `from`, `to` or event changed, a record removed, the phase
/// changed.
#[derive(Clone, Debug)]
enum Edit {
    From(usize, Option<Phase>),
    To(usize, Phase),
    Event(usize, Option<Event>),
    Remove(usize),
    Phase(Option<Phase>),
}

fn phase() -> impl Strategy<Value = Phase> {
    proptest::sample::select(Phase::ALL.to_vec())
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), proptest::option::of(phase())).prop_map(|(i, p)| Edit::From(i, p)),
        (any::<usize>(), phase()).prop_map(|(i, p)| Edit::To(i, p)),
        (any::<usize>(), proptest::option::of(event())).prop_map(|(i, e)| Edit::Event(i, e)),
        any::<usize>().prop_map(Edit::Remove),
        proptest::option::of(phase()).prop_map(Edit::Phase),
    ]
}

fn apply(status: &mut SIPClusterStatus, edit: Edit) {
    let n = status.history.len();
    match edit {
        Edit::Phase(p) => status.phase = p,
        _ if n == 0 => {}
        Edit::From(i, p) => status.history[i % n].from = p,
        Edit::To(i, p) => status.history[i % n].to = p,
        Edit::Event(i, e) => status.history[i % n].event = e,
        Edit::Remove(i) => {
            status.history.remove(i % n);
        }
    }
}

proptest! {
    /// However a log was edited, the turn resumes where the rules say (the replay when the log
    /// replays, the written phase when it does not), its log then replays to that phase within
    /// the bound, every record that stays in the log is kept in order, and a second turn
    /// changes nothing more.
    #[test]
    fn an_edited_log_is_repaired_once_and_keeps_its_records(
        events in proptest::collection::vec(event(), 0..60),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let (mut status, _) = run(&events);
        for e in edits {
            apply(&mut status, e);
        }
        let repaired = resumed(status.clone());
        match replay(&status) {
            // No log (the predecessor's status, or every record removed): nothing to repair.
            Ok(None) => prop_assert_eq!(&repaired, &status),
            Ok(Some(phase)) => {
                prop_assert_eq!(repaired.phase, Some(phase));
                prop_assert_eq!(&repaired.history, &status.history);
            }
            Err(_) => {
                prop_assert!(status.phase.is_none() || repaired.phase == status.phase);
                prop_assert_eq!(replay(&repaired), Ok(repaired.phase));
            }
        }
        prop_assert!(repaired.history.len() <= HISTORY_LIMIT);
        let kept: Vec<&str> = repaired
            .history
            .iter()
            .filter(|r| r.reason != "HistoryRepaired")
            .map(|r| r.reason.as_str())
            .collect();
        let dropped = repaired.history_checkpoint.as_ref().map_or(0, |c| c.transitions as usize)
            - status.history_checkpoint.as_ref().map_or(0, |c| c.transitions as usize);
        prop_assert!(kept.len() + dropped >= status.history.len());
        prop_assert_eq!(resumed(repaired.clone()), repaired);
    }
}

#[test]
fn history_keeps_the_latest_within_the_bound() {
    let mut s = SIPClusterStatus::default();
    for i in 0..HISTORY_LIMIT + 5 {
        let (from, to) = if i % 2 == 0 {
            (s.phase, Phase::Gathering)
        } else {
            (s.phase, Phase::Decommissioning)
        };
        record(&mut s, entry((from, to), Event::Done, &format!("R{i}")));
        s.phase = Some(to);
    }
    assert_eq!(s.history.len(), HISTORY_LIMIT);
    assert_eq!(s.history[0].reason, "R5");
    assert_eq!(
        s.history.last().unwrap().reason,
        format!("R{}", HISTORY_LIMIT + 4)
    );
    assert_eq!(s.history_checkpoint.unwrap().transitions, 5);
}

#[test]
fn an_event_is_recorded_under_its_name() {
    let (status, _) = run(&[Event::Created]);
    let json = serde_json::to_value(&status.history[0]).unwrap();
    assert_eq!(json["event"], "Created");
    let back: TransitionRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back.event, Some(Event::Created));
}

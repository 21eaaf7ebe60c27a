//! The SIPCluster lifecycle as an explicit state machine (statig). The state *is*
//! [`Phase`], the value persisted in `.status.phase`, so a restart resumes exactly there.
//!
//! ```text
//!             spec change / host lost (Regather)
//!       +------------------------------------------+
//!       v                                          |
//!  Gathering -> Extracting -> DeployingInfra -> Labeling -> Ready
//!       ^           |  (HostUnusable: replace it)
//!       +-----------+                ^                      |
//!                                    +------(Drift)---------+
//!  any phase --(Deleting)--> Decommissioning -> (finalizer removed)
//! ```
//!
//! The machine only decides; the controller does the I/O around `handle` and records each
//! transition (status, history, Event, metrics). No entry or exit actions: restoring a phase
//! must have no effect.

pub mod diagram;

use statig::prelude::*;

use crate::api::Phase;

/// What happened to a SIPCluster: seen first, its work in a phase complete, its spec changed,
/// a host lost or unusable, deleted, its services changed by others. Recorded in each history
/// entry, as the machine's input, so the phase can be replayed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum Event {
    /// First sight of the SIPCluster: the machine starts in its initial state.
    Created,
    /// The phase's work is complete.
    Done,
    /// The spec changed, or a member host was lost or taken: choose hosts again.
    Regather,
    /// A chosen host cannot serve (bad secret, label conflict): choose a replacement.
    HostUnusable,
    /// The SIPCluster is being deleted.
    Deleting,
    /// Someone else changed or deleted an object of the cluster's services: apply them again.
    Drift,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::Created,
        Event::Done,
        Event::Regather,
        Event::HostUnusable,
        Event::Deleting,
        Event::Drift,
    ];
}

/// The machine holds no data: the phase is the state, the ledger lives in the status.
#[derive(Default)]
pub struct Lifecycle;

#[state_machine(initial = "Phase::Gathering", state(custom, name = "Phase"))]
impl Lifecycle {
    /// Every phase but Decommissioning: deletion wins, and a spec change or a lost host sends
    /// the cluster back to choose hosts.
    #[superstate]
    fn active(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Deleting => Transition(Phase::Decommissioning),
            Event::Regather | Event::HostUnusable => Transition(Phase::Gathering),
            // Every phase before Ready applies the services anyway; a started machine is past
            // its creation.
            Event::Done | Event::Drift | Event::Created => Handled,
        }
    }

    #[state(superstate = "active")]
    fn gathering(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Done => Transition(Phase::Extracting),
            // Already choosing: a new reason to choose changes nothing.
            Event::Regather | Event::HostUnusable => Handled,
            Event::Deleting | Event::Drift | Event::Created => Super,
        }
    }

    #[state(superstate = "active")]
    fn extracting(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Done => Transition(Phase::DeployingInfra),
            _ => Super,
        }
    }

    #[state(superstate = "active")]
    fn deploying_infra(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Done => Transition(Phase::Labeling),
            _ => Super,
        }
    }

    #[state(superstate = "active")]
    fn labeling(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Done => Transition(Phase::Ready),
            _ => Super,
        }
    }

    #[state(superstate = "active")]
    fn ready(event: &Event) -> Outcome<Phase> {
        match event {
            Event::Drift => Transition(Phase::DeployingInfra),
            // Done stays, as in every active phase.
            _ => Super,
        }
    }

    /// Terminal: the controller removes the finalizer once the work is done.
    #[state]
    fn decommissioning(event: &Event) -> Outcome<Phase> {
        let _ = event;
        Handled
    }
}

/// The phase after `event` in `phase`: the machine restored at `phase`, then handed `event`.
pub fn next(phase: Phase, event: Event) -> Phase {
    after(Some(phase), event)
}

/// The phase after `event` for a cluster in `phase`, or not started yet (`None`): the machine
/// then starts in its initial state before it is handed the event.
pub fn after(phase: Option<Phase>, event: Event) -> Phase {
    let mut machine = Lifecycle.uninitialized_state_machine();
    if let Some(phase) = phase {
        *machine.state_mut() = phase;
    }
    let mut machine = machine.init();
    machine.handle(&event);
    *machine.state()
}

/// The phase a new SIPCluster enters: the machine's initial state.
pub fn start() -> Phase {
    after(None, Event::Created)
}

/// Whether the machine acts on `event` for a cluster in `phase` (`None`: not started): the
/// controller hands it only events that move it, and asks here rather than repeating the rules
/// (a cluster choosing hosts ignores a new reason to choose; none leaves Decommissioning).
pub fn moves(phase: Option<Phase>, event: Event) -> bool {
    Some(after(phase, event)) != phase
}

/// The flush policy: whether the work of `phase` may write anything besides the SIPCluster's
/// status (services, labels, deletions). Before such work, every step recorded so far is
/// written, so nothing is ever written outside the status for a ledger not yet persisted.
/// Gathering and Extracting only read.
pub fn writes_outside_the_status(phase: Phase) -> bool {
    !matches!(phase, Phase::Gathering | Phase::Extracting)
}

/// Whether a cluster in `phase` is serving its tenant: the Ready condition's truth, when no
/// trouble says otherwise.
pub fn serving(phase: Phase) -> bool {
    phase == Phase::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::*;
    use Phase::*;

    #[test]
    fn transitions_follow_the_diagram() {
        let cases = [
            (Gathering, Done, Extracting, "hosts chosen"),
            (Extracting, Done, DeployingInfra, "data read"),
            (DeployingInfra, Done, Labeling, "services applied"),
            (Labeling, Done, Ready, "hosts labeled"),
            (Ready, Done, Ready, "nothing to do"),
            (
                Extracting,
                HostUnusable,
                Gathering,
                "replace an unusable host",
            ),
            (Labeling, HostUnusable, Gathering, "label conflict"),
            (Ready, Regather, Gathering, "spec changed"),
            (Ready, Drift, DeployingInfra, "a service object was changed"),
            (Labeling, Drift, Labeling, "services were just applied"),
            (Gathering, Drift, Gathering, "services will be applied"),
            (
                DeployingInfra,
                Regather,
                Gathering,
                "host lost while deploying",
            ),
            (Gathering, Regather, Gathering, "already gathering"),
            (
                Gathering,
                Deleting,
                Decommissioning,
                "deleted while gathering",
            ),
            (Ready, Deleting, Decommissioning, "deleted when ready"),
            (
                Labeling,
                Deleting,
                Decommissioning,
                "deleted while labeling",
            ),
            (
                Decommissioning,
                Regather,
                Decommissioning,
                "no way back from deletion",
            ),
            (Decommissioning, Done, Decommissioning, "terminal"),
        ];
        for (from, event, to, msg) in cases {
            assert_eq!(next(from, event), to, "{msg}");
        }
    }

    #[test]
    fn every_phase_can_be_deleted_and_none_is_left_by_deletion() {
        for phase in Phase::ALL {
            assert_eq!(next(phase, Deleting), Decommissioning, "{phase}");
        }
        for event in Event::ALL {
            assert_eq!(next(Decommissioning, event), Decommissioning, "{event:?}");
        }
    }

    #[test]
    fn a_new_cluster_starts_gathering_and_may_be_deleted_at_once() {
        assert_eq!(start(), Gathering);
        assert_eq!(after(None, Created), Gathering);
        assert_eq!(after(None, Deleting), Decommissioning);
        for phase in Phase::ALL {
            assert_eq!(next(phase, Created), phase, "{phase}: created once");
        }
    }

    #[test]
    fn the_machine_says_which_events_move_a_cluster() {
        assert!(moves(None, Created), "a new cluster starts");
        assert!(moves(None, Deleting), "and may be deleted at once");
        assert!(!moves(Some(Gathering), Regather), "already choosing");
        assert!(!moves(Some(Gathering), HostUnusable), "already choosing");
        assert!(moves(Some(Ready), Regather));
        assert!(!moves(Some(Ready), Done), "nothing to do");
        for event in Event::ALL {
            assert!(!moves(Some(Decommissioning), event), "{event:?}: terminal");
        }
        let writers: Vec<Phase> = Phase::ALL
            .into_iter()
            .filter(|p| writes_outside_the_status(*p))
            .collect();
        assert_eq!(writers, [DeployingInfra, Labeling, Ready, Decommissioning]);
        let serving: Vec<Phase> = Phase::ALL.into_iter().filter(|p| serving(*p)).collect();
        assert_eq!(serving, [Ready]);
    }

    #[test]
    fn restoring_a_phase_changes_nothing() {
        for phase in Phase::ALL {
            let mut m = Lifecycle.uninitialized_state_machine();
            *m.state_mut() = phase;
            let m = m.init();
            assert_eq!(*m.state(), phase);
        }
    }
}

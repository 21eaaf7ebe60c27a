//! What one piece of work concluded ([`Step`]), and the events that come from outside the
//! phases' work: first sight of a cluster, a spec change, a deletion ([`observe`]). Pure.

use crate::api::SIPClusterStatus;
use crate::machine::{self, Event};

/// What a phase's work (or an outside event) concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Handed to the machine; `None`: stay (blocked, or nothing to do).
    pub event: Option<Event>,
    /// PascalCase, for the history and the Event.
    pub reason: &'static str,
    pub message: String,
    /// When no event: Ready=False with this condition reason, and retry after a backoff.
    pub blocked: Option<&'static str>,
    /// Something went wrong on the way (a host lost, unusable, taken): a Warning Event.
    pub warning: bool,
    /// The Ready condition's reason for a trouble step, when a predecessor's reason says more
    /// than `Progressing` (`UnableToApplyLabels`).
    pub condition: Option<&'static str>,
}

impl Step {
    /// Progress as planned.
    pub fn go(event: Event, reason: &'static str, message: impl Into<String>) -> Self {
        Step {
            event: Some(event),
            reason,
            message: message.into(),
            blocked: None,
            warning: false,
            condition: None,
        }
    }

    /// The Ready condition says `condition` for this step.
    pub fn because(self, condition: &'static str) -> Self {
        Step {
            condition: Some(condition),
            ..self
        }
    }

    /// A transition forced by trouble: a Warning Event tells the story.
    pub fn trouble(event: Event, reason: &'static str, message: impl Into<String>) -> Self {
        Step {
            warning: true,
            ..Step::go(event, reason, message)
        }
    }

    /// Stay in the phase, Ready=False with `condition`, and retry after a backoff.
    pub fn blocked(condition: &'static str, reason: &'static str, message: String) -> Self {
        Step {
            event: None,
            reason,
            message,
            blocked: Some(condition),
            warning: true,
            condition: None,
        }
    }
}

/// The event the cluster's own object carries before any phase works, if the machine acts on
/// it: first sight (no phase yet), a spec generation not yet observed, deletion. Which of
/// them move the cluster is the machine's rule, asked, not repeated here.
pub fn observe(status: &SIPClusterStatus, generation: Option<i64>, deleting: bool) -> Option<Step> {
    let phase = status.phase;
    let step = if deleting {
        Step::go(Event::Deleting, "Deleting", "")
    } else if phase.is_none() {
        Step::go(Event::Created, "Created", "")
    } else if generation != status.observed_generation {
        Step::go(
            Event::Regather,
            "SpecChanged",
            format!("generation {}", generation.unwrap_or_default()),
        )
    } else {
        return None;
    };
    machine::moves(phase, step.event?).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    fn status(phase: Option<Phase>, observed: Option<i64>) -> SIPClusterStatus {
        SIPClusterStatus {
            phase,
            observed_generation: observed,
            ..SIPClusterStatus::default()
        }
    }

    #[test]
    fn outside_events_are_seen_before_any_phase_works() {
        let created = Some((Event::Created, "Created"));
        let regather = Some((Event::Regather, "SpecChanged"));
        let deleting = Some((Event::Deleting, "Deleting"));
        let cases = [
            (status(None, None), Some(1), false, created, "first sight"),
            (
                status(None, None),
                Some(1),
                true,
                deleting,
                "deleted before first sight",
            ),
            (
                status(Some(Phase::Ready), Some(1)),
                Some(1),
                false,
                None,
                "nothing new",
            ),
            (
                status(Some(Phase::Ready), Some(1)),
                Some(2),
                false,
                regather,
                "spec changed",
            ),
            (
                status(Some(Phase::Labeling), Some(1)),
                Some(2),
                false,
                regather,
                "changed mid-way",
            ),
            (
                status(Some(Phase::Gathering), Some(1)),
                Some(2),
                false,
                None,
                "already choosing",
            ),
            (
                status(Some(Phase::Ready), Some(2)),
                Some(2),
                true,
                deleting,
                "deleted when ready",
            ),
            (
                status(Some(Phase::Decommissioning), Some(2)),
                Some(2),
                true,
                None,
                "already decommissioning",
            ),
            (
                status(Some(Phase::Decommissioning), Some(2)),
                Some(3),
                false,
                None,
                "no way back from deletion",
            ),
        ];
        for (status, generation, deleting, want, msg) in cases {
            let got = observe(&status, generation, deleting).map(|s| (s.event.unwrap(), s.reason));
            assert_eq!(got, want, "{msg}");
        }
    }
}

//! Condition types and reasons (the predecessor's), and the bookkeeping that keeps
//! `lastTransitionTime` moving only when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = crate::api::CONDITION_READY;
/// Whether the services' pods are available (their Deployments' status); Ready is not affected.
pub const SERVICES_AVAILABLE: &str = "ServicesAvailable";

pub mod reason {
    pub const PROGRESSING: &str = "Progressing";
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    pub const INFRA_SERVICE_FAILURE: &str = "InfraServiceFailure";
    pub const UNABLE_TO_APPLY_LABELS: &str = "UnableToApplyLabels";
    pub const UNABLE_TO_DECOMMISSION: &str = "UnableToDecommission";
    pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
    /// New in sip: the stored spec holds what the schema now refuses (see `api::legacy`).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `ServicesAvailable`: every service's Deployment is available, some are not, or there
    /// is none.
    pub const AVAILABLE: &str = "Available";
    pub const UNAVAILABLE: &str = "Unavailable";
    pub const NO_SERVICES: &str = "NoServices";
}

/// What a condition says: its type, whether it holds, why.
pub struct Verdict<'a> {
    pub type_: &'a str,
    pub holds: bool,
    pub reason: &'a str,
    pub message: &'a str,
}

/// Sets a condition, keeping `lastTransitionTime` unless the status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    verdict: Verdict<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    let Verdict {
        type_,
        holds: status,
        reason,
        message,
    } = verdict;
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn last_transition_time_moves_only_on_a_flip() {
        let mut c = Vec::new();
        set(
            &mut c,
            Verdict {
                type_: READY,
                holds: false,
                reason: reason::PROGRESSING,
                message: "a",
            },
            Some(1),
            &at(10),
        );
        set(
            &mut c,
            Verdict {
                type_: READY,
                holds: false,
                reason: reason::UNSCHEDULABLE,
                message: "b",
            },
            Some(2),
            &at(20),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].last_transition_time,
            at(10),
            "still False: no transition"
        );
        assert_eq!(
            (c[0].reason.as_str(), c[0].observed_generation),
            ("Unschedulable", Some(2))
        );
        set(
            &mut c,
            Verdict {
                type_: READY,
                holds: true,
                reason: reason::RECONCILIATION_SUCCEEDED,
                message: "ok",
            },
            Some(2),
            &at(30),
        );
        assert_eq!(c[0].last_transition_time, at(30));
    }
}

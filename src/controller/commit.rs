//! One transition, recorded the same way on every path (phase work, creation, spec change,
//! deletion): the history entry, the phase and the Ready condition on the working status; one
//! status write guarded by the resourceVersion the turn holds; then, only once that write made
//! it true, the phase metrics and the Event.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::announce::Announcer;
use super::step::Step;
use super::{Context, Error, MANAGER, conditions, history};
use crate::api::{Phase, SIPCluster, SIPClusterStatus};
use crate::failpoint;
use crate::machine;

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Where a step leads: the phase before (`None`: not started) and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Phase>,
    pub to: Phase,
}

impl Transition {
    /// The machine's answer to `step` from `from`.
    pub fn of(from: Option<Phase>, step: &Step) -> Self {
        let to = match (from, step.event) {
            (_, Some(event)) => machine::after(from, event),
            (Some(phase), None) => phase,
            (None, None) => machine::start(),
        };
        Transition { from, to }
    }

    pub fn moves(&self) -> bool {
        self.from != Some(self.to)
    }
}

/// The working status after `step`: history and phase when it moves, `observedGeneration`
/// while choosing hosts, the Ready condition, the summary columns. Pure.
pub fn record(
    status: &mut SIPClusterStatus,
    cluster: &SIPCluster,
    transition: Transition,
    step: &Step,
    at: &Time,
) {
    let generation = cluster.metadata.generation;
    if transition.moves() {
        let to = transition.to;
        history::record(status, transition.from, to, step.reason, &step.message, at);
        status.phase = Some(to);
    }
    if transition.to == Phase::Gathering {
        status.observed_generation = generation;
    }
    set_ready(status, transition.to, step, generation, at);
    history::summarize(status, &cluster.spec);
}

/// Records `step` on `status` (which holds the phase work's changes; `written` is the status as
/// last written), writes it if it changed, and tells it. Returns the transition and the
/// resourceVersion of the write (or the one given, when nothing was written).
#[allow(clippy::too_many_arguments)]
pub async fn commit(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    ctx: &Context,
    told: &mut Announcer,
    written: &SIPClusterStatus,
    status: &mut SIPClusterStatus,
    step: &Step,
    resource_version: Option<String>,
) -> Result<(Transition, Option<String>), Error> {
    let transition = Transition::of(written.phase, step);
    let at = now();
    record(status, cluster, transition, step, &at);
    let moves = transition.moves();
    if moves {
        failpoint::hit(failpoint::When::Before, transition.to);
    }
    let resource_version = if status != written {
        let version = write_status(api, cluster, status, resource_version).await?;
        if let Some(v) = &version {
            ctx.verified.wrote(cluster, v);
        }
        version
    } else {
        resource_version
    };
    if moves {
        failpoint::hit(failpoint::When::After, transition.to);
        // The status write made it true: now it counts.
        let stayed = written.phase.and_then(|p| time_in(written, p, &at));
        ctx.metrics
            .transition(transition.from, transition.to, stayed);
    }
    if step.blocked.is_some() {
        ctx.metrics
            .failure(written.phase.unwrap_or_default(), step.reason);
    }
    if moves {
        let from = transition
            .from
            .map_or("created".to_string(), |p| p.to_string());
        let note = match step.message.as_str() {
            "" => format!("{from} -> {}", transition.to),
            m => format!("{from} -> {}: {m}", transition.to),
        };
        let type_ = if step.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        told.tell(type_, step.reason, note).await;
    }
    // A block is told when its reason is new, not on every retry.
    if step.blocked.is_some() && written.conditions != status.conditions {
        told.tell(EventType::Warning, step.reason, step.message.clone())
            .await;
    }
    Ok((transition, resource_version))
}

/// How long the cluster has been in `phase`, from the history's last entry into it.
fn time_in(status: &SIPClusterStatus, phase: Phase, now: &Time) -> Option<Duration> {
    let entered = status.history.iter().rev().find(|h| h.to == phase)?;
    Duration::try_from(now.0.duration_since(entered.time.0)).ok()
}

fn set_ready(
    status: &mut SIPClusterStatus,
    phase: Phase,
    step: &Step,
    generation: Option<i64>,
    at: &Time,
) {
    use conditions::{READY, reason, set};
    let (ok, why, message) = match (phase, step.blocked.or(step.condition)) {
        (_, Some(condition)) => (false, condition, step.message.clone()),
        (Phase::Ready, None) => (
            true,
            reason::RECONCILIATION_SUCCEEDED,
            "every host and service is in place".to_string(),
        ),
        (Phase::Decommissioning, None) => {
            (false, reason::PROGRESSING, "decommissioning".to_string())
        }
        (p, None) => (false, reason::PROGRESSING, format!("{p}")),
    };
    set(
        &mut status.conditions,
        READY,
        ok,
        why,
        &message,
        generation,
        at,
    );
}

/// One status write, guarded by the resourceVersion the turn started from (or last wrote):
/// another writer in between is a conflict, and the turn starts over from what it wrote.
async fn write_status(
    api: &Api<SIPCluster>,
    cluster: &SIPCluster,
    status: &SIPClusterStatus,
    resource_version: Option<String>,
) -> Result<Option<String>, Error> {
    let patch = json!({
        "apiVersion": "airship.airshipit.org/v1",
        "kind": "SIPCluster",
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let written = api
        .patch_status(
            &cluster.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Event;
    use conditions::reason;

    fn cluster(generation: i64) -> SIPCluster {
        let mut c = SIPCluster::new("tenant", Default::default());
        c.metadata.namespace = Some("tenants".into());
        c.metadata.generation = Some(generation);
        c
    }

    fn ready_condition(status: &SIPClusterStatus) -> (String, String) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn every_path_records_the_same_way() {
        let at = now();
        let cases = [
            (
                None,
                Step::go(Event::Created, "Created", ""),
                Phase::Gathering,
                "created",
            ),
            (
                Some(Phase::Ready),
                Step::go(Event::Regather, "SpecChanged", "generation 2"),
                Phase::Gathering,
                "spec changed",
            ),
            (
                Some(Phase::Labeling),
                Step::go(Event::Deleting, "Deleting", ""),
                Phase::Decommissioning,
                "deleted",
            ),
            (
                Some(Phase::Labeling),
                Step::go(Event::Done, "HostsLabeled", ""),
                Phase::Ready,
                "work done",
            ),
        ];
        for (from, step, to, msg) in cases {
            let mut status = SIPClusterStatus {
                phase: from,
                ..SIPClusterStatus::default()
            };
            let transition = Transition::of(from, &step);
            assert_eq!(transition, Transition { from, to }, "{msg}");
            record(&mut status, &cluster(2), transition, &step, &at);
            assert_eq!(status.phase, Some(to), "{msg}");
            let last = status.history.last().unwrap();
            assert_eq!(
                (last.from, last.to, last.reason.as_str()),
                (from, to, step.reason),
                "{msg}"
            );
            let ready = if to == Phase::Ready { "True" } else { "False" };
            assert_eq!(ready_condition(&status).0, ready, "{msg}");
        }
    }

    #[test]
    fn a_blocked_step_stays_and_says_why_without_history() {
        let at = now();
        let mut status = SIPClusterStatus {
            phase: Some(Phase::Gathering),
            ..SIPClusterStatus::default()
        };
        let step = Step::blocked(reason::UNSCHEDULABLE, "Unschedulable", "0 of 2 free".into());
        let transition = Transition::of(status.phase, &step);
        assert!(!transition.moves());
        record(&mut status, &cluster(3), transition, &step, &at);
        assert!(status.history.is_empty());
        assert_eq!(
            ready_condition(&status),
            ("False".to_string(), reason::UNSCHEDULABLE.to_string())
        );
        assert_eq!(
            status.observed_generation,
            Some(3),
            "choosing for generation 3"
        );
    }

    #[test]
    fn a_phase_left_reports_how_long_it_lasted() {
        let mut status = SIPClusterStatus::default();
        let entered = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        history::record(&mut status, None, Phase::Gathering, "Created", "", &entered);
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_003).unwrap());
        assert_eq!(
            time_in(&status, Phase::Gathering, &later),
            Some(Duration::from_secs(3))
        );
        assert_eq!(time_in(&status, Phase::Ready, &later), None);
    }
}

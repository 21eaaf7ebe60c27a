//! Transitions, recorded the same way on every path (phase work, creation, spec change,
//! deletion): the history entry, the phase and the Ready condition on the working status; a
//! status write guarded by the resourceVersion the turn holds, for one step or several; then,
//! only once that write made them true, the phase metrics and the Events.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::announce::Announcer;
use super::step::Step;
use super::{Context, Error, MANAGER, availability, conditions, history};
use crate::api::{Phase, SIPCluster, SIPClusterStatus, TransitionRecord};
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
        // Only a cluster's first step moves without an event: the machine's start.
        let event = step.event.unwrap_or(machine::Event::Created);
        history::record(
            status,
            TransitionRecord {
                time: at.clone(),
                event: Some(event),
                from: transition.from,
                to,
                reason: step.reason.to_string(),
                message: step.message.clone(),
            },
        );
        status.phase = Some(to);
    }
    if transition.to == Phase::Gathering {
        status.observed_generation = generation;
    }
    set_ready(status, transition.to, step, generation, at);
    history::summarize(status, &cluster.spec);
}

/// What a recorded step owes the world once the status holding it is written.
enum Owed {
    /// A phase entered: its failpoint, its metrics and its Event.
    Moved {
        transition: Transition,
        stayed: Option<Duration>,
        reason: &'static str,
        note: String,
        warning: bool,
    },
    /// A block: its failure count, and a Warning Event when its reason or message is new (not
    /// on every retry).
    Blocked {
        phase: Phase,
        reason: &'static str,
        message: Option<String>,
    },
}

/// The steps of one turn, recorded on its working status as they happen and written together
/// by [`Commits::flush`]: the turn decides when a write is due (before anything is written
/// outside the status, and when it stops). A step counts in the metrics and is told in an
/// Event only once the write that holds it has succeeded; a turn that ends without it leaves
/// nothing behind, and the next turn starts again from what was written.
pub struct Commits<'a> {
    api: &'a Api<SIPCluster>,
    cluster: &'a SIPCluster,
    ctx: &'a Context,
    told: &'a mut Announcer,
    /// The status as last written (or as the turn read it).
    persisted: SIPClusterStatus,
    /// The resourceVersion that write produced, which guards the next one.
    version: Option<String>,
    owed: Vec<Owed>,
}

impl<'a> Commits<'a> {
    pub fn new(
        api: &'a Api<SIPCluster>,
        cluster: &'a SIPCluster,
        ctx: &'a Context,
        told: &'a mut Announcer,
    ) -> Self {
        Commits {
            api,
            cluster,
            ctx,
            told,
            persisted: cluster.status.clone().unwrap_or_default(),
            version: cluster.resource_version(),
            owed: Vec::new(),
        }
    }

    /// Records `step` on `status` (the working status, with the phase work's changes) and
    /// returns where it leads; nothing is written or told until [`Commits::flush`].
    pub fn step(&mut self, status: &mut SIPClusterStatus, step: &Step) -> Transition {
        let before = status.clone();
        let transition = Transition::of(before.phase, step);
        let at = now();
        record(status, self.cluster, transition, step, &at);
        if transition.to == Phase::Ready {
            // What the kubelets made of the services, said beside Ready and never instead of
            // it; set with every step into or within Ready, so the write that reaches Ready
            // already holds it.
            let namespace = self
                .cluster
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default();
            let availability = availability::of(&self.ctx.deployments, namespace, status);
            let verdict = conditions::Verdict {
                type_: conditions::SERVICES_AVAILABLE,
                holds: availability.available,
                reason: availability.reason,
                message: &availability.message,
            };
            let generation = self.cluster.metadata.generation;
            conditions::set(&mut status.conditions, verdict, generation, &at);
        }
        if transition.moves() {
            failpoint::hit(failpoint::When::Before, transition.to);
            self.owed.push(Owed::Moved {
                transition,
                stayed: before.phase.and_then(|p| time_in(&before, p, &at)),
                reason: step.reason,
                note: note(transition, &step.message),
                warning: step.warning,
            });
        }
        if step.blocked.is_some() {
            self.owed.push(Owed::Blocked {
                phase: before.phase.unwrap_or_default(),
                reason: step.reason,
                message: (before.conditions != status.conditions).then(|| step.message.clone()),
            });
        }
        transition
    }

    /// Whether `status` holds a ledger the last write does not: hosts chosen or released.
    pub fn ledger_pending(&self, status: &SIPClusterStatus) -> bool {
        status.hosts != self.persisted.hosts
    }

    /// Writes `status` if it differs from the last write (one write guarded by that write's
    /// resourceVersion), then counts and tells what the steps recorded since owe. Returns the
    /// resourceVersion the cluster now has.
    pub async fn flush(&mut self, status: &SIPClusterStatus) -> Result<Option<String>, Error> {
        if *status != self.persisted {
            // Before the request: a turn dropped while it is in flight leaves the mark.
            self.ctx
                .ledgers
                .writing(self.cluster, &self.persisted.hosts, &status.hosts);
            crate::failpoint::before_write(
                self.ctx.pause.as_deref(),
                crate::failpoint::Site::Status,
            )
            .await;
            let version =
                write_status(self.api, self.cluster, status, self.version.clone()).await?;
            crate::failpoint::after_write(
                self.ctx.cancel.as_deref(),
                crate::failpoint::Site::Status,
            )
            .await;
            if let Some(v) = &version {
                self.ctx.own_writes.wrote(self.cluster, v);
                self.ctx
                    .ledgers
                    .wrote(self.cluster, &self.persisted.hosts, &status.hosts, v);
            }
            self.version = version;
            self.persisted = status.clone();
        }
        for owed in std::mem::take(&mut self.owed) {
            match owed {
                Owed::Moved {
                    transition,
                    stayed,
                    reason,
                    note,
                    warning,
                } => {
                    // The status write made it true: now it counts.
                    self.ctx
                        .metrics
                        .transition(transition.from, transition.to, stayed);
                    let type_ = if warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    };
                    self.told.tell(type_, reason, note);
                    if failpoint::armed(failpoint::When::After, transition.to) {
                        // The crash comes once the story so far is told.
                        self.told.settle().await;
                        failpoint::hit(failpoint::When::After, transition.to);
                    }
                }
                Owed::Blocked {
                    phase,
                    reason,
                    message,
                } => {
                    self.ctx.metrics.failure(phase, reason);
                    if let Some(message) = message {
                        self.told.tell(EventType::Warning, reason, message);
                    }
                }
            }
        }
        Ok(self.version.clone())
    }

    /// Tells an Event that needs no status write (what a turn did after its last one).
    pub fn tell(&mut self, type_: EventType, reason: &str, note: String) {
        self.told.tell(type_, reason, note);
    }
}

/// The Event's note for a transition: `from -> to`, and the step's message.
fn note(transition: Transition, message: &str) -> String {
    let from = transition
        .from
        .map_or("created".to_string(), |p| p.to_string());
    match message {
        "" => format!("{from} -> {}", transition.to),
        m => format!("{from} -> {}: {m}", transition.to),
    }
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
    use conditions::{READY, Verdict, reason, set};
    let (ok, why, message) = match (phase, step.blocked.or(step.condition)) {
        (_, Some(condition)) => (false, condition, step.message.clone()),
        (p, None) if machine::serving(p) => (
            true,
            reason::RECONCILIATION_SUCCEEDED,
            "every host and service is in place".to_string(),
        ),
        (Phase::Decommissioning, None) => {
            (false, reason::PROGRESSING, "decommissioning".to_string())
        }
        (p, None) => (false, reason::PROGRESSING, format!("{p}")),
    };
    let verdict = Verdict {
        type_: READY,
        holds: ok,
        reason: why,
        message: &message,
    };
    set(&mut status.conditions, verdict, generation, at);
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

    fn counted(ctx: &Context, line: &str) -> bool {
        ctx.metrics.render().lines().any(|l| l == line)
    }

    #[tokio::test]
    async fn steps_are_counted_only_once_a_write_holds_them() {
        let ctx = crate::controller::testing::context(Default::default(), vec![]);
        let cluster = cluster(1);
        let api: Api<SIPCluster> = Api::namespaced(ctx.client.clone(), "tenants");
        let mut told = Announcer::new(&ctx.recorder, &cluster);
        let mut commits = Commits::new(&api, &cluster, &ctx, &mut told);
        let mut status = SIPClusterStatus::default();
        let first = commits.step(&mut status, &Step::go(Event::Created, "Created", ""));
        let second = commits.step(
            &mut status,
            &Step::go(Event::Done, "HostsChosen", "3 hosts"),
        );
        assert_eq!(
            second.from,
            Some(first.to),
            "the second step starts where the first led"
        );
        assert_eq!(status.history.len(), 2, "both are on the working status");
        // No server: the write fails, and nothing it would have made true is counted.
        assert!(commits.flush(&status).await.is_err());
        for (from, to) in [("None", "Gathering"), ("Gathering", "Extracting")] {
            let line = format!(r#"sip_phase_transitions_total{{from="{from}",to="{to}"}} 0"#);
            assert!(counted(&ctx, &line), "counted without a write: {line}");
        }
    }

    #[tokio::test]
    async fn a_block_retried_unchanged_writes_nothing_and_counts_each_time() {
        let ctx = crate::controller::testing::context(Default::default(), vec![]);
        let step = Step::blocked(reason::UNSCHEDULABLE, "Unschedulable", "0 of 2 free".into());
        // The status as the first time this block was written.
        let mut written = SIPClusterStatus {
            phase: Some(Phase::Gathering),
            ..SIPClusterStatus::default()
        };
        let mut cluster = cluster(1);
        let stays = Transition::of(written.phase, &step);
        record(&mut written, &cluster, stays, &step, &now());
        cluster.status = Some(written.clone());
        let api: Api<SIPCluster> = Api::namespaced(ctx.client.clone(), "tenants");
        let mut told = Announcer::new(&ctx.recorder, &cluster);
        let mut commits = Commits::new(&api, &cluster, &ctx, &mut told);
        for retry in 1..=2 {
            let mut status = written.clone();
            assert!(!commits.step(&mut status, &step).moves());
            assert_eq!(status, written, "retry {retry} changes nothing");
            // The client refuses every request: this succeeds only because nothing is sent.
            commits.flush(&status).await.expect("no write");
            let line = format!(
                r#"sip_phase_failures_total{{phase="Gathering",reason="Unschedulable"}} {retry}"#
            );
            assert!(counted(&ctx, &line), "{line}");
        }
    }

    #[test]
    fn a_phase_left_reports_how_long_it_lasted() {
        let mut status = SIPClusterStatus::default();
        let entered = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let created = machine::Event::Created;
        let entry = TransitionRecord {
            time: entered,
            event: Some(created),
            from: None,
            to: Phase::Gathering,
            reason: "Created".into(),
            message: String::new(),
        };
        history::record(&mut status, entry);
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_003).unwrap());
        assert_eq!(
            time_in(&status, Phase::Gathering, &later),
            Some(Duration::from_secs(3))
        );
        assert_eq!(time_in(&status, Phase::Ready, &later), None);
    }
}

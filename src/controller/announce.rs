//! Kubernetes Events about one SIPCluster, told in order without holding up its next phase.
//!
//! An Event is a write of its own (5–20 ms each on the local control plane); published inline,
//! a turn's transitions cost as much again as its status writes. The Event only reports what
//! the status write already made true, so it can travel while the next phase works. One is in
//! flight at a time, each queued behind the one told before it, so `kubectl describe` lists them
//! in the order they happened. A turn waits for its last Events before it ends, so the next
//! turn's never overtake them (handing them to the next turn instead saved nothing measurable:
//! ARCHITECTURE.md, "What the controller remembers").

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::task::JoinHandle;

use crate::api::SIPCluster;

/// The longest note an Event carries, in bytes: the API server refuses notes over 1 kB.
const NOTE_LIMIT: usize = 1000;

pub struct Announcer {
    recorder: Recorder,
    about: ObjectReference,
    in_flight: Option<JoinHandle<()>>,
}

impl Announcer {
    pub fn new(recorder: &Recorder, cluster: &SIPCluster) -> Self {
        Self {
            recorder: recorder.clone(),
            about: cluster.object_ref(&()),
            in_flight: None,
        }
    }

    /// Queues the Event behind the ones told before it, without waiting for any of them.
    pub fn tell(&mut self, type_: EventType, reason: &str, note: String) {
        let (recorder, about, event) = (
            self.recorder.clone(),
            self.about.clone(),
            event(type_, reason, note),
        );
        let before = self.in_flight.take();
        self.in_flight = Some(tokio::spawn(async move {
            if let Some(before) = before {
                // Its failure was logged; what matters here is only that it went first.
                let _ = before.await;
            }
            publish(&recorder, &event, &about).await;
        }));
    }

    /// Waits for every Event told so far.
    pub async fn settle(&mut self) {
        if let Some(task) = self.in_flight.take() {
            // A publish task only logs its failure; a join error means it panicked or was
            // aborted at shutdown, and either way there is nothing left to wait for.
            let _ = task.await;
        }
    }
}

pub fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note)),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Publishes one Event; a failure is logged, never fatal: the status already tells the story.
pub async fn publish(recorder: &Recorder, event: &Event, about: &ObjectReference) {
    if let Err(e) = recorder.publish(event, about).await {
        tracing::warn!(reason = %event.reason, error = %e, "publishing an Event failed");
    }
}

fn truncate(mut note: String) -> String {
    if note.len() > NOTE_LIMIT {
        let cut = (0..=NOTE_LIMIT)
            .rev()
            .find(|&i| note.is_char_boundary(i))
            .unwrap_or(0);
        note.truncate(cut);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_to_what_the_api_server_accepts() {
        // Two bytes a character: the cut must fall between characters, within the limit.
        let long = format!("x{}", "é".repeat(NOTE_LIMIT));
        let cut = event(EventType::Warning, "HostUnusable", long)
            .note
            .unwrap();
        assert_eq!(cut.len(), NOTE_LIMIT - 1);
        assert!(cut.starts_with("xé"));
        let short = event(EventType::Normal, "HostsChosen", "3 hosts".into());
        assert_eq!(short.note.as_deref(), Some("3 hosts"));
        assert_eq!(short.action, "Reconcile");
    }
}

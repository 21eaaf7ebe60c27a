//! Crash points for the resume tests: `SIP_FAILPOINT=<when>:<phase>` makes the process abort
//! (as a SIGKILL would stop it, no cleanup) at an exact phase boundary:
//! - `before:<phase>`: the work that leads into `<phase>` is done (labels patched, services
//!   applied) but the status saying so is not written;
//! - `after:<phase>`: the status write that holds the step into `<phase>` has succeeded (a turn
//!   writes its steps together up to the first phase that writes outside the status, so that
//!   write may hold the next steps too) and its Events are published; nothing after it is done.
//!
//! Unset (always, outside tests) it costs one load of a cached `Option`.

use std::sync::OnceLock;

use crate::api::Phase;

const VARIABLE: &str = "SIP_FAILPOINT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

fn configured() -> Option<(When, Phase)> {
    static POINT: OnceLock<Option<(When, Phase)>> = OnceLock::new();
    *POINT.get_or_init(|| parse(&std::env::var(VARIABLE).ok()?))
}

fn parse(value: &str) -> Option<(When, Phase)> {
    let (when, phase) = value.split_once(':')?;
    let when = match when {
        "before" => When::Before,
        "after" => When::After,
        _ => return None,
    };
    let phase = Phase::ALL.into_iter().find(|p| p.as_str() == phase)?;
    Some((when, phase))
}

/// Whether this is the configured crash point.
pub fn armed(when: When, phase: Phase) -> bool {
    configured() == Some((when, phase))
}

/// Aborts the process when this is the configured crash point.
pub fn hit(when: When, phase: Phase) {
    if armed(when, phase) {
        tracing::warn!(?when, %phase, "failpoint: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_and_nonsense_is_ignored() {
        assert_eq!(
            parse("before:Labeling"),
            Some((When::Before, Phase::Labeling))
        );
        assert_eq!(parse("after:Ready"), Some((When::After, Phase::Ready)));
        for bad in ["", "before", "during:Ready", "after:ready", "after:Nowhere"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

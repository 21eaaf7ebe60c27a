//! Crash points for the resume tests: `SIP_FAILPOINT=<when>:<phase>` makes the process abort
//! (as a SIGKILL would stop it, no cleanup) at an exact phase boundary:
//! - `before:<phase>`: the work that leads into `<phase>` is done (labels patched, services
//!   applied) but the status saying so is not written;
//! - `after:<phase>`: the status with `<phase>` is written, nothing of the next phase is done.
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

/// Aborts the process when this is the configured crash point.
pub fn hit(when: When, phase: Phase) {
    if configured() == Some((when, phase)) {
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

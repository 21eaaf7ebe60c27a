//! The parent's side of the renderer: what each way the child can end means. The child itself
//! (its limits, its answers) runs in `hostile::the_renderer_child_contains_what_the_engines_cannot`,
//! which needs the built `sip` executable.

use std::os::unix::process::ExitStatusExt;

use super::*;

/// A wait status as the kernel reports it: an exit code in the second byte, a signal in the
/// low seven bits.
fn exited(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

fn killed_by(signal: Signal) -> ExitStatus {
    ExitStatus::from_raw(signal.as_raw())
}

#[test]
fn a_configuration_is_taken_up_to_the_limit_and_refused_past_it() {
    let at_limit = vec![b'x'; MAX_OUTPUT];
    assert_eq!(
        outcome(exited(0), at_limit, b"").map(|c| c.len()),
        Ok(MAX_OUTPUT)
    );
    let past = vec![b'x'; MAX_OUTPUT + 1];
    assert_eq!(
        outcome(exited(0), past, b""),
        Err("the rendered configuration passed 1048576 bytes".to_string())
    );
    let not_text = outcome(exited(0), vec![0xff, 0xfe], b"").unwrap_err();
    assert!(not_text.contains("invalid utf-8"), "{not_text}");
}

#[test]
fn each_way_the_child_ends_is_named() {
    assert_eq!(
        outcome(exited(1), Vec::new(), b"  undefined value (in line 1)\n"),
        Err("undefined value (in line 1)".to_string()),
        "the engine's error, as the child printed it"
    );
    for signal in [Signal::XCPU, Signal::KILL] {
        assert_eq!(
            outcome(killed_by(signal), Vec::new(), b"ignored"),
            Err("the template used more than 5 s of CPU; simplify its loops".to_string()),
            "{signal:?}"
        );
    }
    let memory = outcome(killed_by(Signal::SEGV), Vec::new(), b"").unwrap_err();
    assert_eq!(
        memory,
        "rendering it stopped the renderer (signal 11): the template needs more than 192 MiB of memory or nests too deeply"
    );
    let other = outcome(exited(2), b"partial".to_vec(), b"").unwrap_err();
    assert_eq!(
        other, "the template renderer failed (exit status: 2)",
        "a child that could not write its output renders nothing"
    );
}

#[test]
fn the_readers_stop_at_their_cap() {
    assert_eq!(read_capped(&b"abcdef"[..], 4), b"abcd");
    assert_eq!(read_capped(&b"ab"[..], 4), b"ab");
}

#[test]
fn a_renderer_that_cannot_start_is_named() {
    let job = Job {
        syntax: Syntax::Jinja,
        text: "x".into(),
        data: serde_json::Value::Null,
        go: GoModel::default(),
    };
    let error = render(Path::new("/nonexistent/sip"), &job).unwrap_err();
    assert!(
        error.starts_with("starting the template renderer /nonexistent/sip:"),
        "{error}"
    );
}

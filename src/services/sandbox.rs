//! A template a user wrote (a load balancer's ConfigMap) renders in a child process of the
//! operator's own executable, `sip render-template`, under limits the kernel enforces. The
//! engines bound depth, steps and output themselves, but not memory (a Jinja string repeated
//! or doubled a few times outgrows the pod) and not a bug of their own; whatever the template
//! does, only the child dies, and its cluster gets an `InfraServiceFailure` naming the
//! ConfigMap while the operator, its Lease and every other tenant go on.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, Signal, setrlimit};
use serde::{Deserialize, Serialize};

use super::template::{self, GoModel, MAX_OUTPUT, Syntax};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "render-template";
/// The child's address space: the executable's own mappings (about 50 MiB for a debug build)
/// and what a template may allocate. With the operator's own ~40 MiB it stays under the pod's
/// 256 MiB limit, so the cgroup never has to choose whom to kill.
pub const MEMORY: u64 = 192 << 20;
/// Wall time for one render; a legitimate template takes milliseconds. CPU time is capped at
/// the same (the kernel kills the child even if this process were stalled).
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How long the parent sleeps between looks at the child.
const POLL: Duration = Duration::from_millis(1);

/// What the child renders.
#[derive(Serialize, Deserialize)]
pub struct Job {
    pub syntax: Syntax,
    pub text: String,
    pub data: serde_json::Value,
    pub go: GoModel,
}

/// Renders `job` in a child process of `exe`: the configuration, or why not (the engine's
/// error, or the limit the child hit).
pub fn render(exe: &Path, job: &Job) -> Result<String, String> {
    let input = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the template renderer {}: {e}", exe.display()))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the template renderer has no pipes".into());
    };
    // Readers on their own threads, so a child that writes more than a pipe holds before
    // reading all its input cannot stall this one; each reads at most one byte past its cap.
    let out = std::thread::spawn(move || read_capped(stdout, MAX_OUTPUT + 1));
    let err = std::thread::spawn(move || read_capped(stderr, 4096));
    // A child that died early refuses the rest of the input: its exit says why.
    let _ = stdin.write_all(&input);
    drop(stdin);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() >= DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "the template did not finish within {} s; simplify its loops",
                    DEADLINE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => break Err(format!("waiting for the template renderer: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    outcome(status?, out, &err)
}

/// What the child's exit means: its configuration (at most [`MAX_OUTPUT`] bytes), the engine's
/// error it printed (exit code 1), or the limit that stopped it.
fn outcome(status: ExitStatus, out: Vec<u8>, err: &[u8]) -> Result<String, String> {
    if status.success() {
        if out.len() > MAX_OUTPUT {
            return Err(format!(
                "the rendered configuration passed {MAX_OUTPUT} bytes"
            ));
        }
        return String::from_utf8(out).map_err(|e| e.to_string());
    }
    if status.code() == Some(1) {
        // The engine's own error, as the child printed it.
        return Err(String::from_utf8_lossy(err).trim().to_string());
    }
    Err(match status.signal() {
        Some(signal) if signal == Signal::XCPU.as_raw() || signal == Signal::KILL.as_raw() => {
            format!(
                "the template used more than {} s of CPU; simplify its loops",
                DEADLINE.as_secs()
            )
        }
        Some(signal) => format!(
            "rendering it stopped the renderer (signal {signal}): the template needs more than {} MiB of memory or nests too deeply",
            MEMORY >> 20
        ),
        None => format!("the template renderer failed ({status})"),
    })
}

fn read_capped(from: impl Read, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = from.take(cap as u64).read_to_end(&mut buf);
    buf
}

/// The child limits itself before it reads the template: the kernel's limits, and first in
/// line for the OOM killer.
fn limit_self() -> std::io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let limit = Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        };
        setrlimit(resource, limit).map_err(std::io::Error::from)
    };
    set(Resource::As, MEMORY, MEMORY)?;
    let cpu = DEADLINE.as_secs();
    set(Resource::Cpu, cpu, cpu + 1)?;
    set(Resource::Core, 0, 0)?;
    // Raising one's own score needs no privilege; if the pod's cgroup ever fills, the child
    // goes, not the operator. Best effort: a /proc without it is no reason not to render.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    Ok(())
}

/// The child: a [`Job`] on standard input, the configuration on standard output; an engine's
/// error on standard error with exit code 1.
pub fn serve() -> ExitCode {
    if let Err(e) = limit_self() {
        eprintln!("limiting the template renderer: {e}");
        return ExitCode::FAILURE;
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("reading the job: {e}");
        return ExitCode::FAILURE;
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("reading the job: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(input);
    let Job {
        syntax,
        text,
        data,
        go,
    } = job;
    match template::engine(syntax, &text, data, || go) {
        Ok(config) => match std::io::stdout().write_all(config.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;

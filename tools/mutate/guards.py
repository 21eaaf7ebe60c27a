#!/usr/bin/env python3
"""Proves each guard of the invariants by breaking it.

For every guard below: a scratch worktree of HEAD gets the guard's removal (a literal
replacement that must match exactly once, so a guard that moved is reported, not skipped), the
named tests run, and the guard is CAUGHT when one of them fails, MISSED when all pass. Prints
a Markdown table (ARCHITECTURE.md keeps the last one) and exits 1 when any guard is missed or
its removal no longer applies.

    python3 tools/mutate/guards.py [--only NAME ...]

The worktree builds into the repository's own target directory (its crates are built apart,
being at another path; the dependencies are shared), so each mutation costs an incremental
build of sip and its tests.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

# (name, what it guards, file, the text removed, its replacement, tests: (target, filter))
GUARDS = [
    (
        "host label resourceVersion",
        "a label patch decided on a stale host is refused (409), not written over another's claim",
        "src/controller/hosts.rs",
        '"metadata": {"resourceVersion": host.metadata.resource_version, "labels": labels}',
        '"metadata": {"labels": labels}',
        [("integration", "conflicts::a_host_taken_between_the_decision_and_the_label_patch_meets_a_409_and_is_not_overwritten")],
    ),
    (
        "status resourceVersion",
        "a status write decided on a stale read is refused (409) and the turn decides again",
        "src/controller/commit.rs",
        '"metadata": {"resourceVersion": resource_version},',
        '"metadata": {},',
        [("integration", "conflicts::a_status_written_by_another_between_the_read_and_the_write_meets_a_409_and_is_read_again")],
    ),
    (
        "claim marked before the status write",
        "a claim whose turn was cancelled is seen by the next choice",
        "src/controller/commit.rs",
        ".writing(self.cluster, &self.persisted.hosts, &status.hosts);",
        ".caught_up_but(&crate::scheduling::ClusterKey::new(\"\", \"\"));",
        [("integration", "cancellation::a_claim_whose_turn_was_cancelled_is_seen_by_the_next_choice")],
    ),
    (
        "finalizer's decommissioning",
        "a deleted SIPCluster leaves no service and no label",
        "src/controller/reconcile.rs",
        "Finalizer::Cleanup(c) => cleanup(api, &c, ctx).await,",
        "Finalizer::Cleanup(_) => Ok(Action::await_change()),",
        [("integration", "lifecycle::a_sipcluster_goes_to_ready_and_leaves_nothing_when_deleted")],
    ),
    (
        "status before writes outside it",
        "the ledger is persisted before any service or label is written for it",
        "src/controller/reconcile.rs",
        "if machine::writes_outside_the_status(phase)",
        "if false",
        [("integration", "resume::a_crash_at_every_phase_boundary_changes_nothing_in_the_outcome")],
    ),
    (
        "leader fence",
        "a replica past its renew deadline sends no write",
        "src/leader.rs",
        "if read || report || self.allows_writes() {",
        "if true {",
        [("integration", "leader::a_replica_past_its_renew_deadline_sends_no_write"), ("lib", "leader::tests")],
    ),
    (
        "password redaction",
        "a BMC password never prints",
        "src/extraction/credentials.rs",
        'f.write_str("Password(<redacted>)")',
        "f.write_str(&self.0)",
        [("lib", "extraction::tests::reading::credentials_never_print_the_password")],
    ),
    (
        "fitting members kept",
        "a member whose host still fits stays when others are lost, taken or added (no tenant moves needlessly)",
        "src/scheduling/choose.rs",
        "let surplus = kept.len().saturating_sub(spec.wanted as usize);",
        "let surplus = kept.len().saturating_sub(spec.wanted as usize) + decision.release.len().min(kept.len());",
        [("lib", "scheduling::proptests::members_that_still_fit_are_kept_whatever_happens_to_the_pool")],
    ),
    (
        "claim confirmation",
        "of two operators' claims on one host from a shared pool, only the first reaches the services",
        "src/controller/phases/extracting.rs",
        "if let Some(contested) = self.confirm_claims().await? {",
        "if let Some(contested) = None::<Step> {",
        [("integration", "shared_pool::two_operators_sharing_one_pool_never_give_a_host_to_two_clusters"), ("lib", "controller::phases::confirming::tests")],
    ),
    (
        "template renderer child",
        "a hostile template costs only its own cluster (the operator's memory stays bounded)",
        "src/main.rs",
        "Ok(exe) => sip::services::Renderer::Child(exe),",
        "Ok(_exe) => sip::services::Renderer::InProcess,",
        [("integration", "hostile::hostile_templates_cost_only_their_own_cluster")],
    ),
]


def run(cmd, cwd, env, log):
    with open(log, "ab") as out:
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="guards whose name contains one of these")
    args = parser.parse_args()
    root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
    scratch = tempfile.mkdtemp(prefix="sip-guards-")
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")))
    log = os.path.join(scratch + ".log")
    subprocess.check_call(["git", "-C", root, "worktree", "add", "--quiet", "--detach", scratch, "HEAD"])
    rows, failed = [], False
    try:
        for name, what, path, old, new, tests in GUARDS:
            if args.only and not any(o in name for o in args.only):
                continue
            subprocess.check_call(["git", "-C", scratch, "checkout", "--quiet", "--", "."])
            file = os.path.join(scratch, path)
            text = open(file).read()
            if text.count(old) != 1:
                rows.append((name, what, "-", f"REMOVAL DOES NOT APPLY ({text.count(old)} matches in {path})"))
                failed = True
                continue
            open(file, "w").write(text.replace(old, new))
            started = time.time()
            selectors = {
                target: ["--test", "integration"] if target == "integration" else ["--lib"]
                for target, _ in tests
            }
            # A removal that does not build proves nothing: said, not counted as caught.
            built = all(
                run(["cargo", "test", "-p", "sip", *sel, "--no-run"], scratch, env, log) == 0
                for sel in selectors.values()
            )
            if not built:
                rows.append((name, what, "-", f"REMOVAL DOES NOT BUILD (see {log})"))
                failed = True
                continue
            outcomes = []
            for target, test in tests:
                rc = run(["cargo", "test", "-p", "sip", *selectors[target], "--", test], scratch, env, log)
                outcomes.append((test, rc))
            caught = [t for t, rc in outcomes if rc != 0]
            verdict = "caught" if caught else "MISSED"
            failed |= not caught
            shown = ", ".join(f"`{t}`" for t, _ in outcomes)
            rows.append((name, what, shown, f"{verdict} ({time.time() - started:.0f} s)"))
            print(f"{name}: {verdict}", file=sys.stderr, flush=True)
    finally:
        subprocess.call(["git", "-C", root, "worktree", "remove", "--force", scratch])
        shutil.rmtree(scratch, ignore_errors=True)
    print("| Guard removed | What it guards | Tests run | Verdict |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(log: {log})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

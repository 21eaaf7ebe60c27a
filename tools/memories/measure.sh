#!/usr/bin/env bash
# What each of the controller's in-process memories saves, measured with sip-bench.
#
# The operator is built once from a scratch worktree with switches.patch applied: measurement
# only, never shipped; each switch makes one memory answer as if it remembered nothing
# (`SIP_MEMORY_OFF=<name>`). sip-bench's warm sequence (with its steady state: host status
# churn, pokes of Ready clusters) and its burst then run with no memory off, and with each off
# in turn, all on the same build, so the differences are the memories' savings.
# ARCHITECTURE.md ("What the controller remembers") quotes a run of this.
#
#   bash tools/memories/measure.sh [--quick] [memory ...]
#
# The build (the operator and the bench) goes to $SIP_MEMORIES_TARGET (default
# ~/.cache/sip-memories/target): thin LTO, 16 codegen units, faster to build than the release
# profile and the same for every variant.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
quick=()
memories=()
for arg in "$@"; do
  case $arg in
    --quick) quick=(--quick) ;;
    *) memories+=("$arg") ;;
  esac
done
if [ ${#memories[@]} -eq 0 ]; then
  memories=(own-writes ready-check touched relevance templates ledgers)
fi
target=${SIP_MEMORIES_TARGET:-$HOME/.cache/sip-memories/target}
tree=$(mktemp -d /tmp/sip-memories.XXXXXX)
cleanup() { git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"; }
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$tree" HEAD
git -C "$tree" apply "$root/tools/memories/switches.patch"
echo "== building the operator with the switches, and the bench (into $target)"
(cd "$tree" && CARGO_TARGET_DIR=$target cargo build --quiet --release \
  -p sip --bin sip -p sip-envtest --bin sip-bench \
  --config 'profile.release.lto="thin"' --config 'profile.release.codegen-units=16')
for off in none "${memories[@]}"; do
  echo
  echo "######## switched off: $off"
  SIP_MEMORY_OFF=$off "$target/release/sip-bench" --sip "$target/release/sip" \
    --predecessor "$root/../shared/predecessor" --only warm,burst "${quick[@]}" |
    grep -v '^sip-bench:\|^predecessor built\|^control plane up'
done

#!/usr/bin/env bash
# Builds the operator as a static binary without Docker and prints its path (progress and its
# size on stderr). It is a glibc static-pie (`+crt-static`): the musl target cannot be installed
# on machines without rustup's downloads, and sip needs no NSS (it reaches the API server by
# the address in its environment, and uses rustls). The published Dockerfile builds a musl
# binary instead; both land at /sip in an image of one file, run as uid 65532.
#   static-build.sh [profile]   (default release; the node cluster's images use node-image)
# The build has a target directory of its own (target/static), so it never waits for a cargo
# that may be running the caller.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
profile=${1:-release}
target=x86_64-unknown-linux-gnu
SIP_VERSION="${SIP_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}" \
  RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --quiet --locked --profile "$profile" --bin sip --target "$target" --target-dir target/static >&2
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="$PWD/target/static/$target/$dir/sip"
# A static(-pie) binary needs no shared library.
if readelf -d "$bin" | grep -q NEEDED; then
  echo "$bin needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi
"$bin" --version >&2
echo "static binary: $bin, $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)" >&2
echo "$bin"

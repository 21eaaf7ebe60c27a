#!/usr/bin/env bash
# Builds the static (musl) sip binary the image ships, without Docker, and reports its size.
# Needs the musl target (rustup) and musl-gcc (Debian's musl-tools) for ring's C code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v musl-gcc >/dev/null || { echo "musl-gcc missing: apt-get install musl-tools" >&2; exit 1; }
SIP_VERSION="${SIP_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}" \
  CC_x86_64_unknown_linux_musl=musl-gcc CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --release --locked --target "$target" --bin sip
bin="target/$target/release/sip"
# A static(-pie) binary needs no shared library.
if readelf -d "$bin" | grep -q NEEDED; then
  echo "$bin needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi
"$bin" --version
echo "static binary: $bin, $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"

#!/usr/bin/env bash
# Builds the images the node cluster runs, without a Docker engine or a registry, and prints the
# directory of their archives (docker-archive tars that `ctr images import` loads). Progress goes
# to stderr. Usage: images.sh <static sip binary>
#
# - base: a Debian bookworm root filesystem made from Debian's packages (mmdebstrap, minbase),
#   committed under the name `debian:bookworm-slim` resolves to, so Dockerfiles build unchanged;
# - the jump host: images/jump-host/Dockerfile, unchanged, as quay.io/airshipit/sip-rs-jump-host:<version>;
# - haproxy: tools/node/haproxy/Dockerfile (Debian's haproxy) as `haproxy:3.2`, the operator's default;
# - pause: tools/node/pause.c, static, alone in an image: the node's pod sandbox image;
# - the operator: the static binary given, alone in an image as the published Dockerfile lays it
#   out (/sip, uid 65532, entrypoint /sip, command run), as quay.io/airshipit/sip-rs:dev.
#
# Each image is rebuilt only when its inputs change (a hash of them names its archive), under
# $SIP_NODE_CACHE (default $HOME/.cache/sip-node). Builds use buildah with storage of their own
# there (vfs, chroot isolation, never pulling).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
sip_bin=${1:?usage: images.sh <static sip binary>}
cache=${SIP_NODE_CACHE:-$HOME/.cache/sip-node}
out="$cache/images"
mkdir -p "$out"
exec 9>"$cache/.images.lock"
flock 9

version=$(awk -F'"' '/^version *=/ { print $2; exit }' "$repo/Cargo.toml")
base_name=docker.io/library/debian:bookworm-slim
jump_host_name=quay.io/airshipit/sip-rs-jump-host:$version
haproxy_name=docker.io/library/haproxy:3.2
pause_name=localhost/sip-node/pause:1
operator_name=quay.io/airshipit/sip-rs:dev

bh() {
  buildah --root "$cache/buildah/root" --runroot "$cache/buildah/run" --storage-driver vfs "$@"
}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
# A directory's files and their names, in a stable order.
tree_hash() { (cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-16; }

# archive NAME KEY: the archive's path; exists when NAME was built from inputs hashing to KEY.
archive() { echo "$out/$1-$2.tar"; }
save() {
  local image=$1 file=$2
  rm -f "$out/$(basename "${file%-*}")"-*.tar
  bh push --quiet "$image" "docker-archive:$file.partial:$image" >&2
  mv "$file.partial" "$file"
}

# The base: its key changes only with this recipe (Debian's archive moves on; bump to refresh).
base_key=bookworm-minbase-1
if ! bh inspect --type image "$base_name" >/dev/null 2>&1 || [ "$(cat "$cache/base.key" 2>/dev/null)" != "$base_key" ]; then
  echo "making the Debian base from Debian's packages (mmdebstrap)" >&2
  tmp=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase bookworm "$tmp/rootfs.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >&2
  ctr=$(bh from --pull=never scratch)
  bh add "$ctr" "$tmp/rootfs.tar" / >&2
  bh config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bh commit --quiet --rm "$ctr" "$base_name" >&2
  rm -rf "$tmp"
  echo "$base_key" > "$cache/base.key"
fi

build_dockerfile() {
  local name=$1 image=$2 context=$3 key file
  key=$(echo "$base_key $(tree_hash "$context")" | sha256sum | cut -c1-16)
  file=$(archive "$name" "$key")
  [ -f "$file" ] && return
  echo "building $image from $context" >&2
  bh bud --quiet --pull=never --isolation chroot --layers=false -t "$image" "$context" >&2
  save "$image" "$file"
}
build_dockerfile jump-host "$jump_host_name" "$repo/images/jump-host"
build_dockerfile haproxy "$haproxy_name" "$here/haproxy"

# An image of one static file, run as `user`: pause and the operator (which exposes `port`).
build_single() {
  local name=$1 image=$2 binary=$3 path=$4 user=$5 entrypoint=$6 cmd=$7 port=${8:-} key file ctr
  key=$(echo "$path $user $entrypoint $cmd $port $(hash_of "$binary")" | sha256sum | cut -c1-16)
  file=$(archive "$name" "$key")
  [ -f "$file" ] && return
  echo "building $image" >&2
  ctr=$(bh from --pull=never scratch)
  bh copy --chmod 0755 "$ctr" "$binary" "$path" >&2
  bh config --user "$user" --entrypoint "$entrypoint" --cmd "$cmd" ${port:+--port "$port"} "$ctr"
  bh commit --quiet --rm "$ctr" "$image" >&2
  save "$image" "$file"
}
pause_bin="$cache/pause-$(hash_of "$here/pause.c")"
if [ ! -x "$pause_bin" ]; then
  gcc -static -O2 -o "$pause_bin.partial" "$here/pause.c"
  mv "$pause_bin.partial" "$pause_bin"
fi
build_single pause "$pause_name" "$pause_bin" /pause 65535:65535 '["/pause"]' '[]'
if readelf -d "$sip_bin" | grep -q NEEDED; then
  echo "$sip_bin is not static (it needs shared libraries); build it with +crt-static" >&2
  exit 1
fi
build_single operator "$operator_name" "$sip_bin" /sip 65532:65532 '["/sip"]' '["run"]' 8080/tcp

echo "$out"

#!/usr/bin/env bash
# Makes sure the software the tests run is on this machine, installing what is missing, and
# prints where it is (`name=path` lines on stdout; progress on stderr). The tests call it on
# first need, as the control plane's build.sh; .ci/run calls it up front.
#
# - From Debian's packages (as root, with apt-get): haproxy, prometheus (and promtool), OpenSSH's
#   sshd and client, jq and curl (what `sip-hosts` needs in the jump host image), iproute2; and
#   for the node cluster (tools/envtest/src/node): containerd, runc, the CNI plugins, iptables,
#   buildah and mmdebstrap (the images), gcc and libc6-dev (the static pause binary).
# - From PyPI, into a virtualenv cached under $HOME/.cache: sushy-tools, metal3's Redfish
#   emulator, pinned below.
# It exits non-zero, naming what is missing, when it cannot install.
set -euo pipefail

sushy_version=2.2.0
packages=(haproxy prometheus openssh-server openssh-client jq curl iproute2
  containerd runc containernetworking-plugins iptables buildah mmdebstrap gcc libc6-dev)
have() {
  case "$1" in
    openssh-server) [ -x /usr/sbin/sshd ] ;;
    openssh-client) command -v ssh >/dev/null && command -v ssh-keygen >/dev/null ;;
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null ;;
    iproute2) command -v ip >/dev/null ;;
    containerd) command -v containerd >/dev/null && command -v ctr >/dev/null ;;
    containernetworking-plugins) [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] ;;
    libc6-dev) [ -f /usr/lib/x86_64-linux-gnu/libc.a ] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/sip-test-tools
mkdir -p "$cache_root"
# One installer at a time: several test threads may ask at once.
exec 9>"$cache_root/.lock"
flock 9

missing=()
for p in "${packages[@]}"; do have "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing: ${missing[*]} (as root on Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
fi

venv="$cache_root/sushy-tools-$sushy_version"
# A virtualenv names its own path in its scripts, so it is built in place; the stamp says it
# was built to the end.
if [ ! -f "$venv/.complete" ]; then
  echo "installing sushy-tools $sushy_version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "sushy-tools==$sushy_version" >&2
  touch "$venv/.complete"
fi

echo "haproxy=$(command -v haproxy)"
echo "prometheus=$(command -v prometheus)"
echo "promtool=$(command -v promtool)"
echo "sshd=/usr/sbin/sshd"
echo "ssh=$(command -v ssh)"
echo "sushy_emulator=$venv/bin/sushy-emulator"
echo "sushy_python=$venv/bin/python"

#!/usr/bin/env bash
# Prints the directory holding etcd, kube-apiserver, kube-controller-manager, kubectl and the
# node's kubelet, kube-proxy and kube-scheduler for the
# tests and the demo, building them first when needed.
#
# - KUBEBUILDER_ASSETS (the envtest convention) pointing at a directory with etcd and
#   kube-apiserver wins: nothing is built.
# - Otherwise the binaries are built from the Go modules pinned in this directory and cached in
#   $SIP_CONTROL_PLANE_CACHE (default $HOME/.cache/sip-control-plane)/<hash of the pins>, so a
#   fresh clone reuses an earlier build and a change of pins builds anew.
#
# Progress goes to stderr; the only line on stdout is the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -x "$KUBEBUILDER_ASSETS/etcd" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks etcd or kube-apiserver; building instead" >&2
fi

command -v go >/dev/null || { echo "go is required to build the local control plane" >&2; exit 1; }

# Bump when the build commands below change in a way that changes the binaries.
recipe=2
key=$( (cat "$here/go.mod" "$here/go.sum"; echo "recipe=$recipe") | sha256sum | cut -c1-16)
cache_root=${SIP_CONTROL_PLANE_CACHE:-$HOME/.cache/sip-control-plane}
dest="$cache_root/$key"
bins=(etcd kube-apiserver kube-controller-manager kubectl kubelet kube-proxy kube-scheduler)

complete() {
  local b
  for b in "${bins[@]}"; do [[ -x "$dest/$b" ]] || return 1; done
}

if complete; then
  echo "$dest"
  exit 0
fi

# One builder at a time: parallel test binaries or CI steps may ask at once.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if complete; then
  echo "$dest"
  exit 0
fi

staging=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "building the local control plane (pins $key) into $dest; first time only" >&2
start=$(date +%s)
cd "$here"
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export CGO_ENABLED=0
# -trimpath and stripped symbols keep the binaries small; they are test tools, not debug targets.
go build -trimpath -ldflags="-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
# Stamp the Kubernetes version (hack/lib/version.sh does this in the real build); without it the
# binaries report v0.0.0-master and kubectl warns about version skew.
kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod)
minor=${kube_version#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in kube-apiserver kube-controller-manager kubectl kubelet kube-proxy kube-scheduler; do
  go build -trimpath -ldflags="-s -w $stamp" -o "$staging/$b" "k8s.io/kubernetes/cmd/$b"
done
chmod 755 "$staging"
rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$dest"

#!/usr/bin/env bash
# Removes everything a node cluster (tools/envtest/src/node) started or made, in whatever state
# it is: its pods' processes, containerd's shims, containerd, the node's components, the mounts
# under its directory, its iptables chains, its bridge, its cgroups, the forwarding switch it
# turned on, and the directory. Safe to run twice, and on a cluster that never finished
# starting. Usage: down.sh <node directory>
set -uo pipefail
dir=${1:?usage: down.sh <node directory>}
dir=${dir%/}
env="$dir/node.env"
# Written by the harness before it starts anything: BRIDGE, CGROUP, FORWARD_BEFORE, STARTED.
BRIDGE=sipnode0 CGROUP=sip-node FORWARD_BEFORE="" STARTED=""
# shellcheck disable=SC1090
[ -f "$env" ] && . "$env"

# Every process of the node names its directory on its command line (kubelet, kube-proxy,
# kube-scheduler, kube-controller-manager, containerd, the shims, the supervisors), or descends
# from one that does (a supervisor's child: the control plane's scratch-directory keeper).
kill_named() {
  local pid child i=0 pids=()
  for pid in $(pgrep -f -- "$dir/" || true); do
    [ "$pid" = "$$" ] || [ "$pid" = "$PPID" ] || pids+=("$pid")
  done
  while [ "$i" -lt "${#pids[@]}" ]; do
    for child in $(pgrep -P "${pids[$i]}" || true); do pids+=("$child"); done
    i=$((i + 1))
  done
  [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
  return 0
}
kill_named

# The pods' processes live in the node's cgroups (the kubelet's cgroupRoot); a container
# outlives its shim, so they are killed there, until the cgroups are empty.
cgroup_dirs() { find /sys/fs/cgroup/*/"$CGROUP" -depth -type d 2>/dev/null; }
for _ in $(seq 1 50); do
  procs=$(cgroup_dirs | while read -r d; do cat "$d/cgroup.procs" 2>/dev/null; done | sort -u)
  [ -z "$procs" ] && break
  # shellcheck disable=SC2086
  kill -KILL $procs 2>/dev/null
  sleep 0.1
done
cgroup_dirs | while read -r d; do rmdir "$d" 2>/dev/null; done
kill_named

# Mounts under the directory (the kubelet's bind mount of its root, pod volumes, container
# root filesystems, network namespaces), deepest first.
for _ in 1 2 3; do
  mounts=$(awk -v d="$dir/" 'index($5, d) == 1 || $5 == substr(d, 1, length(d) - 1) { print $5 }' /proc/self/mountinfo | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount -l "$m" 2>/dev/null; done
done

# iptables: the kubelet's and kube-proxy's chains (KUBE-*) and the CNI plugins' (CNI-*), and
# the rules that jump to them. The harness refuses to start where such chains exist already.
for tool in iptables ip6tables; do
  command -v "$tool" >/dev/null || continue
  for table in filter nat mangle; do
    "$tool" -t "$table" -S 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' |
      while read -r rule; do
        # shellcheck disable=SC2086
        eval "$tool -t $table -D ${rule#-A }" 2>/dev/null
      done
    chains=$("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ { print $2 }')
    for c in $chains; do "$tool" -t "$table" -F "$c" 2>/dev/null; done
    for c in $chains; do "$tool" -t "$table" -X "$c" 2>/dev/null; done
  done
done

ip link del "$BRIDGE" 2>/dev/null
[ -n "$FORWARD_BEFORE" ] && echo "$FORWARD_BEFORE" > /proc/sys/net/ipv4/ip_forward
# containerd 1.6 puts its shims' sockets under /run/containerd/s whatever its state directory.
[ -n "$STARTED" ] && [ -d /run/containerd/s ] && find /run/containerd/s -type s -newer "$STARTED" -delete 2>/dev/null
rm -rf --one-file-system "$dir"
for mark in current kept; do
  [ "$(cat "/run/sip-node/$mark" 2>/dev/null)" = "$dir" ] && rm -f "/run/sip-node/$mark"
done
exit 0

#!/bin/sh
# sip-hosts: the tenant cluster's hosts, from the jump host. Written by the sip operator.
#   sip-hosts list                          name, role, IP and BMC of every host
#   sip-hosts ssh HOST [ARGS...]            ssh to a host with the node keys (as `ssh HOST`)
#   sip-hosts status HOST                   the host's power state (Redfish BMCs)
#   sip-hosts power-on HOST
#   sip-hosts power-off [--force] HOST      graceful shutdown; --force cuts the power
#   sip-hosts reboot [--force] HOST         graceful restart; --force resets at once
# Needs jq, and curl for power actions. Credentials never appear on a command line.
set -eu
HOSTS="${SIP_HOSTS_FILE:-/etc/sip/hosts/hosts.json}"

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

host_field() {
  jq -er --arg h "$1" ".[] | select(.name == \$h) | $2" "$HOSTS"
}

redfish() {
  host="$1" method="$2" path="$3" body="${4:-}"
  host_field "$host" .name >/dev/null || {
    echo "sip-hosts: no host $host; \`sip-hosts list\` shows them" >&2
    exit 1
  }
  system=$(host_field "$host" '.bmc.redfishSystem // empty') || {
    echo "sip-hosts: $host has no Redfish system URL (driver $(host_field "$host" .bmc.driver)); use the vendor's tool" >&2
    exit 1
  }
  # The credentials go to curl on stdin, not argv, as one JSON-quoted config string: a quote,
  # a backslash or a newline in a password stays in the password. The certificate is checked
  # unless the host's spec.bmc says disableCertificateVerification, and BMCs are reached
  # directly unless the SIPCluster says `bmc: {proxy: true}`.
  jq -r --arg h "$host" '.[] | select(.name == $h) | .bmc |
      "user = \((.username + ":" + .password) | @json)",
      (if .proxy then empty else "noproxy = \"*\"" end),
      (if .disableCertificateVerification then "insecure" else empty end)' "$HOSTS" |
    curl --config - --silent --show-error --fail \
      -X "$method" -H 'Content-Type: application/json' \
      ${body:+--data "$body"} "$system$path"
}

reset() {
  redfish "$1" POST /Actions/ComputerSystem.Reset "{\"ResetType\": \"$2\"}" >/dev/null
  echo "$1: $2 requested"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
force=false
if [ "${1:-}" = --force ]; then
  force=true
  shift
fi
case "$cmd" in
  list)
    jq -r '.[] | [.name, .role, .ip, .bmc.address] | @tsv' "$HOSTS"
    ;;
  ssh)
    [ $# -ge 1 ] || usage
    exec ssh "$@"
    ;;
  status)
    [ $# -eq 1 ] || usage
    system=$(redfish "$1" GET "")
    printf '%s' "$system" | jq -r .PowerState
    ;;
  power-on)
    [ $# -eq 1 ] || usage
    reset "$1" On
    ;;
  power-off)
    [ $# -eq 1 ] || usage
    if $force; then reset "$1" ForceOff; else reset "$1" GracefulShutdown; fi
    ;;
  reboot)
    [ $# -eq 1 ] || usage
    if $force; then reset "$1" ForceRestart; else reset "$1" GracefulRestart; fi
    ;;
  *)
    usage
    ;;
esac

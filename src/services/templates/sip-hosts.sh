#!/bin/sh
# sip-hosts: the tenant cluster's hosts, from the jump host. Written by the sip operator.
#   sip-hosts list                  name, role, IP and BMC of every host
#   sip-hosts ssh HOST [ARGS...]    ssh to a host with the node keys
#   sip-hosts status HOST           the host's power state (Redfish BMCs)
#   sip-hosts power-on|power-off|reboot HOST
# Needs jq, and curl for power actions. Credentials never appear on a command line.
set -eu
HOSTS="${SIP_HOSTS_FILE:-/etc/sip/hosts/hosts.json}"
SSH_CONFIG="${SIP_SSH_CONFIG:-/etc/sip/ssh/config}"

usage() {
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

host_field() {
  jq -er --arg h "$1" ".[] | select(.name == \$h) | $2" "$HOSTS"
}

redfish() {
  host="$1" method="$2" path="$3" body="${4:-}"
  system=$(host_field "$host" '.bmc.redfishSystem // empty') || {
    echo "sip-hosts: $host has no Redfish system URL (driver $(host_field "$host" .bmc.driver)); use the vendor's tool" >&2
    exit 1
  }
  user=$(host_field "$host" .bmc.username)
  pass=$(host_field "$host" .bmc.password)
  # The credentials go to curl on stdin, not argv.
  printf 'user = "%s:%s"\n' "$user" "$pass" |
    curl --config - --silent --show-error --fail --insecure \
      -X "$method" -H 'Content-Type: application/json' \
      ${body:+--data "$body"} "$system$path"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
  list)
    jq -r '.[] | [.name, .role, .ip, .bmc.address] | @tsv' "$HOSTS"
    ;;
  ssh)
    [ $# -ge 1 ] || usage
    exec ssh -F "$SSH_CONFIG" "$@"
    ;;
  status)
    [ $# -eq 1 ] || usage
    redfish "$1" GET "" | jq -r .PowerState
    ;;
  power-on | power-off | reboot)
    [ $# -eq 1 ] || usage
    case "$cmd" in
      power-on) reset=On ;;
      power-off) reset=ForceOff ;;
      reboot) reset=ForceRestart ;;
    esac
    redfish "$1" POST /Actions/ComputerSystem.Reset "{\"ResetType\": \"$reset\"}"
    echo "$1: $reset requested"
    ;;
  *)
    usage
    ;;
esac

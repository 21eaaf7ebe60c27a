set -eu
install -d -m 0700 /etc/sip/ssh/keys
for key in /etc/sip/node-keys/*; do
  install -m 0600 "$key" /etc/sip/ssh/keys/
done
install -m 0600 /etc/sip/authorized-keys/authorized_keys /etc/sip/ssh/authorized_keys
install -m 0600 /etc/sip/hosts/ssh_config /etc/sip/ssh/config

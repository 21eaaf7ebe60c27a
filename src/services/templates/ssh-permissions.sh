# The login user's ~/.ssh, owned by it with mode 0600: sshd (StrictModes) and ssh refuse keys
# and configurations that others can read or write. `ubuntu` is the login user of sip's image
# and of the predecessor's, so either image finds its keys where its sshd looks.
set -eu
user=ubuntu
dir=/home/$user/.ssh
install -d -m 0700 -o "$user" -g "$user" "$dir" "$dir/keys"
for key in /etc/sip/node-keys/*; do
  install -m 0600 -o "$user" -g "$user" "$key" "$dir/keys/"
done
install -m 0600 -o "$user" -g "$user" /etc/sip/authorized-keys/authorized_keys "$dir/authorized_keys"
install -m 0600 -o "$user" -g "$user" /etc/sip/hosts/ssh_config "$dir/config"
# sshd's host key, root's alone (the Secret's mount is group-readable, which sshd refuses), and
# its privilege separation directory, root's and not writable by others.
install -m 0600 /etc/sip/host-key/ssh_host_ed25519_key /run/sip-host-key/ssh_host_ed25519_key
chmod 0755 /run/sshd

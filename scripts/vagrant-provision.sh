#!/usr/bin/env bash
# Provisioning of the Vagrant VM (see Vagrantfile); runs as root inside the VM.
#
#   vagrant-provision.sh install   setup.sh for a lab run as `vagrant`, the token, the service
#   vagrant-provision.sh start     (re)start the lab service, wait for it, print its URL
# Environment: CONTAINERLAB_REPO (default /vagrant), LAB_HOST_PORT (the host's forwarded port)
set -euo pipefail

repo=${CONTAINERLAB_REPO:-/vagrant}
# The venv lives on the VM's own disk: a synced folder cannot hold it (nor overlayfs dirs).
export CONTAINERLAB_VENV=/opt/containerlab/venv
env_file=/etc/containerlab/lab.env

case "${1:-}" in
  install)
    bash "$repo/scripts/setup.sh" --lab-user vagrant
    # The token, made once and kept across re-provisioning, so open browser tabs keep
    # working. Readable by root and by the vagrant user the server runs as, nobody else.
    install -d -m 0755 /etc/containerlab
    if [ ! -s "$env_file" ]; then
      (umask 077; echo "JUPYTER_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        > "$env_file")
    fi
    chown root:vagrant "$env_file"
    chmod 0640 "$env_file"
    install -m 0644 "$repo/scripts/containerlab-lab.service" /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable containerlab-lab.service
    ;;
  start)
    systemctl restart containerlab-lab.service
    token=$(sed -n 's/^JUPYTER_TOKEN=//p' "$env_file")
    for _ in $(seq 90); do
      if curl -fsS -o /dev/null -H "Authorization: token $token" \
           http://127.0.0.1:8888/api/status 2>/dev/null; then
        printf '\n  containerlab lab: http://127.0.0.1:%s/lab?token=%s\n\n' \
          "${LAB_HOST_PORT:-8888}" "$token"
        exit 0
      fi
      sleep 1
    done
    echo "the lab did not start; its log:" >&2
    journalctl -u containerlab-lab.service -n 40 --no-pager >&2
    exit 1
    ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac

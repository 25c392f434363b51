#!/usr/bin/env bash
# Start the learner's lab: JupyterLab serving notebooks/, with the root "containerlab" kernel
# as the default. Runs scripts/setup.sh first (idempotent, quick when all is in place), then
# runs the server in the foreground: Ctrl-C stops it and its kernels.
#
#   sudo scripts/lab.sh [--lab-user USER] [--no-setup]
#
#   --lab-user USER   passed to setup.sh (kernels start through sudo for a server run as USER)
#   --no-setup        skip setup.sh; for a server that is not root (the Vagrant VM's service)
# Environment:
#   LAB_PORT          port to listen on (default 8888; taken means fail, not another port)
#   LAB_IP            address to bind (default 127.0.0.1; the Vagrant VM uses 0.0.0.0)
#   JUPYTER_TOKEN     the access token (default: a new random one at each start)
#   LAB_STATE_DIR     Jupyter's config, data and runtime files (default: <venv>/var/lab)
#   CONTAINERLAB_VENV the virtual environment (default: <repo>/.venv), as for setup.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CONTAINERLAB_VENV:-$repo/.venv}
setup_args=()
run_setup=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lab-user) setup_args+=(--lab-user "${2:?--lab-user needs a user name}"); shift 2 ;;
    --no-setup) run_setup=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "lab.sh: unknown option '$1'; see scripts/lab.sh --help" >&2; exit 2 ;;
  esac
done

if [ "$run_setup" = 1 ]; then
  bash "$repo/scripts/setup.sh" "${setup_args[@]}"
fi
[ -x "$venv/bin/jupyter-lab" ] || {
  echo "lab.sh: no JupyterLab in $venv; run: sudo scripts/setup.sh" >&2; exit 1; }

port=${LAB_PORT:-8888}
ip=${LAB_IP:-127.0.0.1}
token=${JUPYTER_TOKEN:-$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')}

# Keep Jupyter away from the home directory: a stray ~/.jupyter config, a user kernelspec
# named "containerlab" in ~/.local/share/jupyter or an IPython startup file would otherwise
# change what the lab does. Everything Jupyter writes (settings, trust db, connection
# files) goes under one state directory instead.
state=${LAB_STATE_DIR:-$venv/var/lab}
export JUPYTER_CONFIG_DIR=$state/config JUPYTER_DATA_DIR=$state/data
export JUPYTER_RUNTIME_DIR=$state/runtime IPYTHONDIR=$state/ipython
# The token goes to the server through its environment, not its command line, which any
# local user could read with ps.
export JUPYTER_PREFER_ENV_PATH=1 JUPYTER_TOKEN=$token
mkdir -p "$JUPYTER_CONFIG_DIR" "$JUPYTER_DATA_DIR" "$JUPYTER_RUNTIME_DIR" "$IPYTHONDIR"

args=(
  --ServerApp.root_dir="$repo/notebooks"
  --ServerApp.ip="$ip"
  --ServerApp.port="$port"
  --ServerApp.port_retries=0                 # a taken port is an error, never a silent other URL
  --MultiKernelManager.default_kernel_name=containerlab
  --no-browser
  -y                                         # Ctrl-C stops at once, without a y/n prompt
  --LabApp.news_url=None                     # no announcements or update checks from the web
  --LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate
)
if [ "$(id -u)" -eq 0 ]; then
  args+=(--allow-root)                       # root server, root kernels: the simple path
fi

# From inside a VM listening on 0.0.0.0, the forwarded port is reached as 127.0.0.1.
shown_ip=$ip
[ "$ip" = 0.0.0.0 ] && shown_ip=127.0.0.1
printf '\n\033[1m==> the lab: http://%s:%s/lab?token=%s\033[0m\n' "$shown_ip" "$port" "$token"
printf '    open it once the server below says it is running; Ctrl-C stops it\n\n'

exec "$venv/bin/jupyter-lab" "${args[@]}"

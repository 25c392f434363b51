#!/usr/bin/env bash
# Install everything containerlab needs, idempotently: the system packages, a virtual
# environment with the package installed editable, and the Jupyter kernel the notebooks use.
# The lab command, the test command, CI and the Vagrant VM all run this same script, so
# they never drift apart. Run it again at any time: it only does what is missing.
#
#   scripts/setup.sh [--lab-user USER]
#
#   --lab-user USER   the JupyterLab server will run as USER (the Vagrant VM does this):
#                     the kernel is then started through `sudo -n`, so notebooks run as root.
# Environment:
#   CONTAINERLAB_VENV   where the virtual environment lives (default: <repo>/.venv)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CONTAINERLAB_VENV:-$repo/.venv}
lab_user=""
while [ $# -gt 0 ]; do
  case "$1" in
    --lab-user) lab_user=${2:?--lab-user needs a user name}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'; see scripts/setup.sh --help" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: containerlab needs root (namespaces, mounts, cgroups); run: sudo $0 $*" >&2
  exit 1
fi

# System packages. Each later concept adds what it needs here.
packages=(
  busybox-static   # the offline base image: one static binary, hundreds of applets
  iproute2         # ip, to look at links, netns and routes next to what the code does
  util-linux       # unshare, nsenter, mount: the shell equivalents the notebooks show
  procps           # ps, for the process views
  python3-venv     # the virtual environment
  python3-dev      # headers, in case a wheel has to be built
  sudo             # the lab's kernels run as root through sudo when the server does not
  curl             # health checks of the lab server
  git
  # images (notebooks 03-04 and their tests): real peers to check containerlab against
  docker-registry  # the distribution registry, started on 127.0.0.1 by tests and notebooks
  skopeo           # copies images between registries, OCI layouts and docker archives
  umoci            # unpacks OCI images: proves our layouts are standard
  runc             # the reference runtime, and crun: the benchmarks compare against them
  crun
  nftables         # nft: container NAT and published ports (containerlab/network/nat.py)
)
# The cgroup v2 kernel for the tests (scripts/v2-kernel) is Debian's amd64 kernel booted
# under QEMU: installed only where that test can run (elsewhere it skips, saying why).
if [ "$(uname -m)" = x86_64 ] && grep -qx 'ID=debian' /etc/os-release; then
  packages+=(qemu-system-x86)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The docker-registry package starts a registry on every interface (with htpasswd): the
  # tests and notebooks start their own on 127.0.0.1 instead, so the service stays off.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
else
  say "system packages present"
fi

# The virtual environment, made from the system Python (>= 3.11), not a pyenv shim:
# a venv on the system interpreter starts in ~15 ms, which matters for every container start.
py=/usr/bin/python3
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup.sh: containerlab needs Python >= 3.11; $py is $("$py" --version)" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment in $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.containerlab-installed"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  say "installing containerlab (editable) with its lab and test extras"
  "$venv/bin/pip" install -q --upgrade pip
  # compat mode: a plain .pth path entry; the default import-hook finder costs ~15 ms at
  # every interpreter start, and a container start starts two.
  "$venv/bin/pip" install -q -e "$repo[lab,test]" --config-settings editable_mode=compat
  touch "$stamp"
else
  say "python packages present"
fi
# Compiled bytecode up front: with PYTHONDONTWRITEBYTECODE set (some machines set it), every
# start would otherwise compile the package again, ~150 ms per command.
"$venv/bin/python" -m compileall -q "$repo/containerlab" >/dev/null
# The command, lean. pip's console script starts Python with its site module, which reads
# the venv's .pth files and the distribution's sitecustomize: ~3 ms of every command, of
# every container start. The CLI needs only the standard library and this package, so this
# one starts without site (-S) and finds the package by its path. Written through a
# temporary file and a rename: a command started meanwhile runs the old one or the new one.
printf '%s\n' "#!$venv/bin/python3 -S" \
  "# Written by scripts/setup.sh in place of pip's console script (see there why)." \
  "import sys" "" "sys.path.insert(0, '$repo')" "from containerlab.cli import main" "" "main()" \
  > "$venv/bin/.containerlab.new"
chmod 755 "$venv/bin/.containerlab.new"
mv -f "$venv/bin/.containerlab.new" "$venv/bin/containerlab"
# The command on PATH, so `containerlab run ...` works from any shell.
ln -sf "$venv/bin/containerlab" /usr/local/bin/containerlab

# The Jupyter kernel the notebooks name ("containerlab"). It must run as root: notebooks
# create namespaces and mounts. A root server starts it directly; a server run as a normal
# user (the Vagrant VM) starts it through passwordless sudo for that one command.
kdir="$venv/share/jupyter/kernels/containerlab"
# Remember the lab user: running setup again without --lab-user (the test command does)
# must not turn a VM's sudo kernel back into a direct one its non-root server cannot use.
if [ -z "$lab_user" ] && [ -f "$venv/.containerlab-lab-user" ]; then
  lab_user=$(cat "$venv/.containerlab-lab-user")
fi
mkdir -p "$kdir"
if [ -n "$lab_user" ]; then
  id "$lab_user" >/dev/null 2>&1 || { echo "setup.sh: no user '$lab_user'" >&2; exit 1; }
  argv="[\"sudo\", \"-n\", \"--preserve-env=JPY_PARENT_PID\", \"$venv/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"]"
  # env_keep: the kernel gets JPY_PARENT_PID (sudo refuses --preserve-env without it), so it
  # exits with its server instead of being orphaned. Checked before it goes in place: a
  # broken file in /etc/sudoers.d would disable sudo for the whole machine.
  rule=$(mktemp)
  { printf 'Defaults:%s env_keep += "JPY_PARENT_PID"\n' "$lab_user"
    printf '%s ALL=(root) NOPASSWD: %s -m ipykernel_launcher *\n' "$lab_user" "$venv/bin/python"
  } > "$rule"
  chmod 0440 "$rule"
  visudo -cf "$rule" >/dev/null || { rm -f "$rule"; echo "setup.sh: bad sudoers rule" >&2; exit 1; }
  mv "$rule" /etc/sudoers.d/containerlab-lab
  echo "$lab_user" > "$venv/.containerlab-lab-user"
else
  argv="[\"$venv/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"]"
fi
cat > "$kdir/kernel.json" <<JSON
{
  "argv": $argv,
  "display_name": "containerlab (root)",
  "language": "python",
  "metadata": {"debugger": true}
}
JSON
# The offline base image (busybox, from busybox-static): the lab and the tests never need
# the internet. Built once, deterministically; a no-op when it is there.
"$venv/bin/containerlab" images -q >/dev/null
say "setup done: $("$venv/bin/containerlab" version 2>/dev/null || echo containerlab)"

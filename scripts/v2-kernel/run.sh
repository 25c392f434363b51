#!/usr/bin/env bash
# Run a command on a real cgroup v2 kernel (Debian's, under QEMU/TCG), with the host's
# root shared read-only: by default the project's cgroup tests. See v2kernel.py --help.
#
#   sudo scripts/v2-kernel/run.sh                     # smoke check + test_cgroups.py, test_run.py
#   sudo scripts/v2-kernel/run.sh -- -k memory tests/test_cgroups.py   # pytest arguments
#   sudo scripts/v2-kernel/run.sh --shell 'cat /proc/self/cgroup'      # any command
#
# /tmp in the guest is an ext4 scratch disk (io controller), the rest the host overlaid.
# Exits with the guest command's status (124 timeout, 125 guest setup failed, 77 QEMU or
# the kernel cannot be installed). Leaves only the kernel cache in
# /var/cache/containerlab/v2-kernel (~80 MB; CLAB_V2_CACHE overrides it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The system Python, standard library only: the harness needs no venv of its own.
exec /usr/bin/python3 "$here/v2kernel.py" "$@"

#!/usr/bin/env bash
# The whole test suite, from nothing: setup (idempotent), lint, the tests against the real
# kernel, then every notebook under nbval. Extra arguments go to the pytest run of tests/
# (for example: scripts/test.sh -k namespaces).
#
#   sudo scripts/test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CONTAINERLAB_VENV:-$repo/.venv}
cd "$repo"

bash scripts/setup.sh
export PATH="$venv/bin:$PATH"

# A few tests run the CLI as `nobody` (the "not root" errors, the lab as a plain user): it
# must be able to reach the checkout. A clone into `mktemp -d` is mode 0700.
if (( (8#$(stat -c %a "$repo") & 8#005) != 8#005 )); then
    echo "==> $repo: readable by others now (tests run the CLI as an unprivileged user)"
    chmod o+rx "$repo"
fi

echo "==> ruff (lint and format)"
ruff check containerlab tests scripts notebooks
ruff format --check containerlab tests scripts

echo "==> pytest: unit and integration tests (real kernel, as root)"
pytest -p no:cacheprovider tests "$@"

echo "==> pytest --nbval: every notebook, top to bottom"
pytest -p no:cacheprovider --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg

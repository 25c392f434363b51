"""The cgroup code on a real cgroup v2 kernel, whatever cgroups the host has.

This machine may be a v1/v2 hybrid while learners' VMs are pure v2, so the cgroup tests
also run on Debian's stock kernel booted under QEMU with ``cgroup_no_v1=all``
(scripts/v2-kernel/run.sh): the host's root shared read-only, this repo and its venv
unchanged, cgroup2 at /sys/fs/cgroup. The guest first proves it is pure v2 (smoke.py),
then runs tests/test_cgroups.py and tests/test_run.py (containers through the CLI, on the
default bridge network); this test passes only if all of that passed in there.
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "scripts" / "v2-kernel" / "run.sh"
GUEST_TIMEOUT = 600  # seconds the harness gives the guest before it kills QEMU

with warnings.catch_warnings():
    # The marker is not registered in pyproject; `-m v2kernel` / `-m "not v2kernel"` work.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    v2kernel = pytest.mark.v2kernel


def _guest_output(console: str) -> str:
    """What the guest command printed: the console between the begin and exit markers."""
    _, _, after = console.partition("CLAB-V2-BEGIN\n")
    return after or console


@v2kernel
@pytest.mark.timeout(GUEST_TIMEOUT + 120)
def test_cgroup_tests_pass_on_a_cgroup_v2_kernel(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("QEMU shares the host's root with the guest: needs root")
    console = tmp_path / "console.log"
    cmd = [str(HARNESS), "--quiet", "--console", str(console), "--timeout", str(GUEST_TIMEOUT)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=GUEST_TIMEOUT + 60)
    finally:
        if proc.poll() is None:  # SIGTERM: the harness kills QEMU and removes its temp dir
            proc.terminate()
            proc.communicate(timeout=30)
    if proc.returncode == 77:
        reason = re.findall(r"unavailable: (.*)", err)
        pytest.skip(f"no cgroup v2 kernel here: {reason[-1] if reason else err.strip()}")
    out = _guest_output(console.read_text(errors="replace")) if console.exists() else ""
    report = f"guest output:\n{out[-12000:]}\nharness:\n{err[-3000:]}"
    assert proc.returncode == 0, f"exit status {proc.returncode} on the v2 kernel\n{report}"
    assert "smoke: ok  no cgroup v1 hierarchy is mounted" in out, report
    assert re.search(r"^\d+ passed", out, re.M), report
    assert not re.search(r"\d+ (failed|error)", out), report

"""Shared by the tests and the notebook checks: nothing may be left behind.

A snapshot of the host's mounts, network namespaces, links, cgroups and containerlab
processes is taken when the session starts and compared when it ends; anything new fails
the run, named, so the test or notebook that leaked it can be found. (Per-test checks in
tests/conftest.py catch the culprit earlier.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        # mount point and filesystem type: ids change, these name the mount.
        return {f"{line.split()[4]} ({line.split(' - ')[1].split()[0]})" for line in f}


def _netns() -> set[str]:
    out = set()
    if os.path.isdir("/run/netns"):
        out |= {f"netns {n}" for n in os.listdir("/run/netns")}
    return out


def _links() -> set[str]:
    res = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {
        f"link {line.split(':')[1].strip().split('@')[0]}"
        for line in res.stdout.splitlines()
        if line.strip()
    }


def _cgroups() -> set[str]:
    out = set()
    root = Path("/sys/fs/cgroup")
    if root.is_dir():
        for p in root.glob("*/clab*"):
            out.add(f"cgroup {p}")
        for p in root.glob("clab*"):
            out.add(f"cgroup {p}")
    return out


def _processes() -> set[str]:
    """containerlab launchers, and any process in namespaces other than ours (a container)."""
    ours = {k: os.stat(f"/proc/self/ns/{k}").st_ino for k in ("pid", "mnt", "uts", "net", "ipc")}
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            foreign = [
                k for k, ino in ours.items() if os.stat(f"/proc/{entry}/ns/{k}").st_ino != ino
            ]
        except OSError:
            continue
        if "containerlab.nsexec" in cmd or foreign:
            out.add(f"process {entry} ({cmd[:60]}) in own {','.join(foreign) or '-'} ns")
    return out


def host_snapshot() -> set[str]:
    """Everything on the host that containerlab could leak, as comparable strings."""
    return {f"mount {m}" for m in _mounts()} | _netns() | _links() | _cgroups() | _processes()


_before: set[str] = set()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest):
    """Fail the test that leaves a mount, netns, link, cgroup or container process behind."""
    before = host_snapshot()
    yield
    leaked = host_snapshot() - before
    if leaked:
        pytest.fail(f"{request.node.nodeid} left behind: {sorted(leaked)}", pytrace=False)


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before
    _before = host_snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = sorted(host_snapshot() - _before)
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "LEAK CHECK FAILED: the run left these behind:\n  " + "\n  ".join(leaked)
        if reporter:
            reporter.write_line(msg, red=True)
        else:
            print(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

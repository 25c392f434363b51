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
    """containerlab's cgroups: the ``clab`` parents and every ``clab-<id>`` under them, at
    the root of each hierarchy or nested under our own cgroup (v1 memory here)."""
    root = Path("/sys/fs/cgroup")
    out = set()
    if root.is_dir():
        for pattern in (
            "clab*",
            "clab*/clab-*",
            "*/clab*",
            "*/clab*/clab-*",
            "*/*/*/clab*",
            "*/*/*/clab*/clab-*",
        ):
            out |= {f"cgroup {p}" for p in root.glob(pattern) if p.is_dir()}
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


class OrphanReaper:
    """Be the init of our own descendants: PID 1 of this machine never reaps orphans.

    A container's processes can be orphaned (a test kills a supervisor or a CLI with
    SIGKILL on purpose). On a normal host, init reaps them; here they would stay zombies,
    and a zombie still holds its cgroup, which then cannot be removed. So the test session
    becomes a child subreaper (orphans are re-parented to it) and a thread reaps zombie
    children that no ``subprocess.Popen`` of ours waits for. A zombie is left alone for a
    second first, so a Popen created this instant is never robbed of its exit status.
    """

    def __init__(self) -> None:
        import threading
        import weakref

        self.popen_pids: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        original = subprocess.Popen.__init__
        popen_pids = self.popen_pids

        def init(popen, *args, **kwargs):  # record every Popen's pid as it is born
            original(popen, *args, **kwargs)
            popen_pids[popen.pid] = popen

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        from containerlab import syscalls

        syscalls.set_child_subreaper()
        self.thread = threading.Thread(target=self.run, name="orphan-reaper", daemon=True)
        self.thread.start()

    def zombie_children(self) -> list[int]:
        me, out = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] == "Z" and int(fields[1]) == me:
                    out.append(int(entry))
        return out

    def run(self) -> None:
        import time

        while not self.stop.wait(0.2):
            now = time.monotonic()
            for pid in self.zombie_children():
                if pid in self.popen_pids:
                    continue
                first = self.seen.setdefault(pid, now)
                if now - first >= 1.0:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                    self.seen.pop(pid, None)


_reaper: OrphanReaper | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before, _reaper
    _reaper = OrphanReaper()
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

"""Run inside the v2 guest first: prove the kernel is pure cgroup v2 and its controllers work.

Standard library only, so it says something even when the package is broken: no v1
hierarchy anywhere, cgroup2 at /sys/fs/cgroup, and a child cgroup whose memory.max really
OOM-kills a process that goes over it and whose pids.max really refuses a fork.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CG = ROOT / "v2-smoke"  # not clab*: the suite's leak check owns that prefix


def check(ok: bool, what: str) -> None:
    print(f"smoke: {'ok ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        sys.exit(1)


def main() -> int:
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    types = {m[1]: m[2] for m in mounts}
    check(types.get(str(ROOT)) == "cgroup2", "cgroup2 is mounted at /sys/fs/cgroup")
    check(not any(m[2] == "cgroup" for m in mounts), "no cgroup v1 hierarchy is mounted")
    # /proc/cgroups: hierarchy 0 for every controller means none is bound to v1.
    rows = [r.split() for r in Path("/proc/cgroups").read_text().splitlines()[1:]]
    check(all(r[1] == "0" for r in rows), "every controller belongs to the v2 hierarchy")
    controllers = (ROOT / "cgroup.controllers").read_text().split()
    print(f"smoke: kernel {os.uname().release}; controllers: {' '.join(controllers)}")
    check({"memory", "pids", "cpu", "io"} <= set(controllers), "memory pids cpu io available")

    CG.mkdir()
    try:
        enabled = (ROOT / "cgroup.subtree_control").read_text().split()
        check({"memory", "pids"} <= set(enabled), "memory and pids enabled for children")
        (CG / "memory.max").write_text(str(32 << 20))
        (CG / "memory.swap.max").write_text("0")
        (CG / "pids.max").write_text("4")
        check((CG / "memory.max").read_text().strip() == str(32 << 20), "memory.max = 32 MiB")

        # A process that joins the cgroup, then asks for 128 MiB: the OOM killer ends it.
        hog = (
            f"open('{CG}/cgroup.procs', 'w').write('0'); "
            "b = bytearray(128 << 20); b[::4096] = b'x' * len(b[::4096])"
        )
        res = subprocess.run([sys.executable, "-c", hog], capture_output=True)
        events = dict(line.split() for line in (CG / "memory.events").read_text().splitlines())
        check(res.returncode == -9, f"the 128 MiB hog was SIGKILLed (status {res.returncode})")
        check(int(events["oom_kill"]) >= 1, f"memory.events counts it: {events}")

        # pids.max = 4: a process in the cgroup (one pid) can fork 3 children, not 8.
        forker = (
            f"import os, signal; open('{CG}/cgroup.procs', 'w').write('0')\n"
            "kids, refused = [], 0\n"
            "for _ in range(8):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except BlockingIOError:\n"
            "        refused += 1\n"
            "        continue\n"
            "    if pid == 0:\n"
            "        signal.pause()\n"
            "    kids.append(pid)\n"
            "for pid in kids:\n"
            "    os.kill(pid, 9)\n"
            "    os.waitpid(pid, 0)\n"
            "print(len(kids), refused)\n"
        )
        res = subprocess.run([sys.executable, "-c", forker], capture_output=True, text=True)
        pev = dict(line.split() for line in (CG / "pids.events").read_text().splitlines())
        check(res.stdout.split() == ["3", "5"], f"3 forks allowed, 5 refused: {res.stdout!r}")
        check(int(pev["max"]) >= 5, f"pids.events counts the refusals: {pev}")
    finally:
        if CG.exists():
            (CG / "cgroup.kill").write_text("1")  # v2 only: kill all that is left in it
        for _ in range(50):  # the killed processes leave the cgroup a moment after they die
            try:
                CG.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    check(not CG.exists(), "the cgroup is removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`system doctor`: every kind of leftover made for real (processes killed, a create killed
halfway, a wiped record under a live supervisor, a dead pull), found, and removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerlab import cgroups, syscalls
from containerlab.errors import ContainerlabError
from containerlab.runtime import doctor
from tests.test_lifecycle import alive, clab, inspect, ok, our_processes, run_d, state_of, wait_for

PY = sys.executable


def kinds() -> list[str]:
    return sorted(f.kind for f in doctor.examine())


def fixed() -> str:
    res = clab("system", "doctor", "--fix")
    assert res.returncode == 0, res.stderr
    assert ok("system", "doctor").startswith("nothing left behind")
    return res.stdout


def python_until_killed(code: str, ready: Path) -> subprocess.Popen:
    """A Python process running ``code`` (which touches ``ready`` then sleeps)."""
    proc = subprocess.Popen([PY, "-c", code])
    wait_for(ready.exists, what="the process to reach its point")
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_a_record_whose_processes_were_killed(clab_root):
    keep = run_d("busybox", "sleep", "30")
    auto = run_d("--rm", "busybox", "sleep", "30")
    for cid in (keep, auto):
        st = state_of(clab_root, cid)
        os.kill(st["supervisor_pid"], signal.SIGKILL)
        os.kill(st["pid"], signal.SIGKILL)
        wait_for(lambda p=st["pid"]: not alive(p), what="the container to die")
    res = clab("system", "doctor")
    assert res.returncode == 1
    # Two records, the two cgroups and the two addresses on the default network their dead
    # supervisors never gave back.
    assert "6 leftover(s)" in res.stdout
    assert res.stdout.count("holds address") == 2
    assert "a --rm container whose supervisor died" in res.stdout
    assert res.stdout.count("\ncgroup ") + res.stdout.startswith("cgroup ") == 2
    out = fixed()
    assert f"removed container {auto[:12]}" in out
    for cid in (keep, auto):  # both cgroups gone (the --rm one with its record)
        with pytest.raises(ContainerlabError):
            cgroups.Cgroup.open(f"clab-{cid[:12]}")
    # The one without --rm stays, truthfully exited, as Docker keeps it.
    assert ok("ps", "-aq", "--no-trunc").split() == [keep]
    assert inspect(keep)["State"]["ExitCode"] == 255
    ok("rm", keep)
    assert os.listdir(clab_root / "images/leases") == []


def test_only_the_supervisor_killed_its_container_dies_with_it(clab_root):
    """PID 1 is the supervisor's own child (no launcher in between) and dies with it
    (parent-death signal, armed once adopted); doctor then finds and removes the rest."""
    plain = run_d("busybox", "sleep", "30")
    init = run_d("--init", "busybox", "sleep", "30")
    for cid in (plain, init):
        st = state_of(clab_root, cid)
        os.kill(st["supervisor_pid"], signal.SIGKILL)
        wait_for(lambda p=st["pid"]: not alive(p), what="PID 1 to die with its supervisor")
    wait_for(lambda: our_processes(clab_root) == [], what="every process of ours to die")
    res = clab("system", "doctor")
    assert res.returncode == 1
    # Per container: its record (said running), its cgroup and its address.
    assert "6 leftover(s)" in res.stdout, res.stdout
    fixed()
    for cid in (plain, init):
        assert inspect(cid)["State"]["ExitCode"] == 255
        with pytest.raises(ContainerlabError):
            cgroups.Cgroup.open(f"clab-{cid[:12]}")
    ok("rm", plain, init)


CREATE = """
import time
from pathlib import Path
from containerlab.image.store import Store
from containerlab.runtime import container, state
store = Store()
image = container.image_for(store, "busybox")
def prepare(d):
    store.hold("{cid}", image)
    Path("{ready}").touch()
    time.sleep(60)
state.create("{cid}", {{"name": "half"}}, prepare=prepare)
"""


def test_a_create_killed_halfway_leaves_a_dir_a_name_and_a_hold(clab_root, tmp_path):
    ok("run", "--rm", "busybox", "true")
    cid = "ab" * 32
    ready = tmp_path / "ready"
    proc = python_until_killed(CREATE.format(cid=cid, ready=ready), ready)
    try:
        assert kinds() == []  # a create in progress holds its lock: not a leftover
    finally:
        kill(proc)
    assert kinds() == ["dir", "hold", "name"]
    out = fixed()
    assert "removed name half" in out and f"released image hold of {cid[:12]}" in out
    assert os.listdir(clab_root / "containers") == []
    assert os.listdir(clab_root / "names") == []
    assert os.listdir(clab_root / "images/leases") == []
    run_d("--name", "half", "busybox", "true")  # the name is free again
    ok("rm", "-f", "half")


REMOVE = """
import time
from pathlib import Path
from containerlab.runtime import state
state.mark_removing(state.resolve("{cid}"))
Path("{ready}").touch()
time.sleep(60)
"""


def test_a_removal_killed_halfway(clab_root, tmp_path):
    cid = run_d("busybox", "true")
    ok("wait", cid)
    ready = tmp_path / "ready"
    kill(python_until_killed(REMOVE.format(cid=cid, ready=ready), ready))
    assert ok("ps", "-a", "--format", "{{.State}}").strip() == "removing"
    assert kinds() == ["record"]
    assert f"removed container {cid[:12]}" in fixed()
    assert os.listdir(clab_root / "containers") == []


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_stray_supervisor_and_container_whose_record_was_wiped(clab_root):
    cid = run_d("--name", "wiped", "busybox", "sleep", "30")
    st = state_of(clab_root, cid)
    os.kill(st["supervisor_pid"], signal.SIGSTOP)  # it must not notice the wipe
    # Stopped, not on its way: kill() returns at once, and a supervisor caught in the exec
    # into its lean watcher shows doctor no environment (no state root) for a moment.
    wait_for(lambda: _state(st["supervisor_pid"]) == "T", what="the supervisor to stop")
    shutil.rmtree(clab_root / "containers" / cid)
    found = {(f.kind, f.what) for f in doctor.examine()}
    assert ("process", str(st["supervisor_pid"])) in found
    assert ("process", str(st["pid"])) in found  # its root is the container's overlay
    assert ("name", "wiped") in found and ("hold", cid[:12]) in found
    out = fixed()
    assert f"killed process {st['supervisor_pid']}" in out
    wait_for(lambda: our_processes(clab_root) == [], what="the strays to die")
    assert os.listdir(clab_root / "names") == [] and os.listdir(clab_root / "images/leases") == []


PULL = """
import time
from pathlib import Path
from containerlab.image.store import Store
store = Store()
with store.pending(), store.ingest() as w:
    w.write(b"x" * 4096)
    Path("{ready}").touch()
    time.sleep(60)
"""


def test_a_dead_pulls_temp_file(clab_root, tmp_path):
    ready = tmp_path / "ready"
    proc = python_until_killed(PULL.format(ready=ready), ready)
    try:
        assert kinds() == []  # a live pull's temp file is its own
    finally:
        kill(proc)
    assert kinds() == ["temp"]
    fixed()
    assert os.listdir(clab_root / "images/tmp") == []


def test_a_host_mount_inside_the_state_directory(clab_root):
    target = clab_root / "containers" / ("cd" * 32) / "rootfs"
    target.mkdir(parents=True)
    syscalls.mount("tmpfs", str(target), "tmpfs", 0, "size=1m")
    try:
        assert kinds() == ["dir", "mount"]
        out = fixed()
        assert f"unmounted {target}" in out
    finally:
        if os.path.ismount(target):
            syscalls.umount2(str(target), syscalls.MNT_DETACH)
    assert os.listdir(clab_root / "containers") == []


def test_nothing_to_do_is_said_so(clab_root):
    run_d("--name", "fine", "busybox", "sleep", "30")
    time.sleep(0.1)
    res = clab("system", "doctor")
    assert res.returncode == 0 and res.stdout.startswith("nothing left behind")
    ok("rm", "-f", "fine")

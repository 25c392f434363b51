"""The launcher both ways: re-executed (``python -m containerlab.nsexec``, what a Jupyter
kernel gets) and forked from a single-threaded caller (what the CLI gets). Same guarantees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")
MODES = ("fork", "exec")  # CONTAINERLAB_LAUNCHER: "exec" forces the re-executed launcher


def clab(mode: str, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERLAB_LAUNCHER": mode}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=env, **kw)


def run(mode: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return clab(mode, "run", "--rm", "--network", "none", *args, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_exit_codes_are_the_same_either_way(mode):
    assert run(mode, "busybox", "sh", "-c", "exit 3").returncode == 3
    missing = run(mode, "busybox", "no-such-command")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert run(mode, "busybox", "/etc/passwd").returncode == 126
    assert run(mode, "busybox", "sh", "-c", "sleep 9 & kill -9 $!; wait $!").returncode == 137


@pytest.mark.parametrize("mode", MODES)
def test_stdin_and_output_are_the_commands(mode):
    res = run(mode, "-i", "busybox", "sh", "-c", "cat; echo err >&2", input="hello\n")
    assert res.returncode == 0 and res.stdout == "hello\n" and res.stderr == "err\n"
    # Without -i the container's stdin is empty (/dev/null), even if ours is not.
    assert run(mode, "busybox", "cat", input="not for you\n").stdout == ""


@pytest.mark.parametrize("mode", MODES)
def test_the_init_and_the_launcher_are_named_as_the_launcher(mode):
    res = run(mode, "--init", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[1:3] == ["-m", "containerlab.nsexec"]


@pytest.mark.parametrize("mode", MODES)
def test_the_init_holds_no_descriptor_but_its_stdio(mode):
    """The launcher's host files (the cgroup files it moves itself with, the explain copy of
    the caller's stderr) stay with it: an --init PID 1 never execs, so close-on-exec does
    not protect it, and a descriptor it kept would be the container's way out of its cgroup.
    """
    res = run(mode, "--init", "--explain", "busybox", "sh", "-c", "ls /proc/1/fd")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "1", "2"]


@pytest.mark.parametrize("mode", MODES)
def test_explain_shows_the_launchers_steps(mode):
    res = run(mode, "--explain", "busybox", "true")
    assert res.returncode == 0, res.stderr
    steps = res.stderr
    assert "unshare(" in steps and "pivot_root" in steps
    # Into the container's cgroup (its tasks or cgroup.procs) before the cgroup namespace.
    before = steps[: steps.index("unshare --cgroup")]
    assert re.search(r"echo \S+ > /sys/fs/cgroup/\S*/clab-\w+/(tasks|cgroup\.procs)", before)
    # Every line of a step whole: the caller's and the launcher's never cut into each other.
    assert all(line.startswith(("[explain] ", "          $ ")) for line in steps.splitlines())


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("mode", MODES)
def test_a_detached_containers_launcher_exits_and_pid_1_is_the_supervisors_child(clab_root, mode):
    cid = clab(mode, "run", "-d", "--network", "none", "busybox", "sleep", "30").stdout.strip()
    try:
        with open(clab_root / "containers" / cid / "state.json") as f:
            st = json.load(f)
        assert _parent(st["pid"]) == st["supervisor_pid"]
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert b"containerlab.nsexec" not in f.read(), "a launcher stayed"
            except FileNotFoundError:
                continue
    finally:
        assert clab(mode, "rm", "-f", cid).returncode == 0


ADOPTED = """
import os, signal, sys
from containerlab import namespaces as ns, syscalls
try:
    ns.spawn(["true"], new={"pid"}, adopt=True)
except ns.NamespaceError as e:
    print("refused:", e)
syscalls.set_child_subreaper()
# The last under an init (PID 1 here), which passes SIGTERM on to `sleep`.
for argv, sig in ((["true"], 0), (["sh", "-c", "exit 3"], 0), (["sleep", "30"], signal.SIGKILL),
                  (["sleep", "30"], signal.SIGTERM)):
    proc = ns.spawn(argv, new={"pid", "mnt"}, mount_proc=True, adopt=True,
                    init=sig == signal.SIGTERM)
    gone = not os.path.exists(f"/proc/{proc.pid}")
    parent = open(f"/proc/{proc.child_pid}/stat").read().rsplit(")", 1)[1].split()[1]
    if sig:
        proc.kill(sig)
    print(type(proc.popen).__name__, gone, int(parent) == os.getpid(), proc.wait(),
          proc.returncode)
    proc.close()
with ns.spawn(["sleep", "30"], new={"pid"}, adopt=True) as proc:
    pass
print("closed", proc.returncode)
try:
    ns.spawn(["no-such-command"], new={"pid"}, adopt=True)
except ns.CommandNotFoundError as e:
    print("127", e)
print("children", open(f"/proc/self/task/{os.getpid()}/children").read().split())
"""


@pytest.mark.parametrize("mode", MODES)
def test_spawn_adopt_the_caller_waits_for_the_command_itself(mode):
    res = subprocess.run(
        [sys.executable, "-c", ADOPTED],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONTAINERLAB_LAUNCHER": mode},
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("refused: adopt=True needs a caller that is a child subreaper")
    kind = "_ForkedLauncher" if mode == "fork" else "Popen"
    assert lines[1:5] == [f"{kind} True True {rc} {rc}" for rc in (0, 3, 137, 143)]
    assert lines[5] == "closed 137"
    assert lines[6].startswith('127 exec: "no-such-command"')
    assert lines[7] == "children []"  # every launcher and command reaped


FORKED = """
import os, sys, time
from containerlab import namespaces as ns
with open(sys.argv[1], "w") as out:
    proc = ns.spawn(["sh", "-c", "echo $$; exit 5"], new={"pid", "mnt"}, mount_proc=True,
                    stdout=out)
    print(type(proc.popen).__name__, proc.wait(), proc.wait(), proc.returncode)
try:
    ns.spawn(["no-such-command"], new={"uts"})
except ns.CommandNotFoundError as e:
    print("127", e)
"""


def test_a_single_threaded_caller_forks_the_launcher(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-c", FORKED, str(out)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert first == "_ForkedLauncher 5 5 5"
    assert second.startswith('127 exec: "no-such-command"')
    assert out.read_text() == "1\n"


def test_a_multi_threaded_caller_re_executes_the_launcher():
    # This test process runs the orphan reaper's thread (see ../conftest.py).
    from containerlab import namespaces as ns

    with ns.spawn(["sleep", "30"], new={"pid"}) as proc:
        assert type(proc.popen) is subprocess.Popen
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[1:3] == [b"-m", b"containerlab.nsexec"]


JOINS = """
import os, sys
from containerlab import cgroups, namespaces as ns
cg = cgroups.Cgroup.create(sys.argv[1], cgroups.Limits(pids=4))
try:
    with ns.spawn(["sleep", "30"], new={"pid"}, cgroup=cg, stdin=None) as proc:
        print(type(proc.popen).__name__, cg.pids() == [proc.child_pid])
finally:
    cg.remove()
"""


def test_the_launcher_joins_the_cgroup_itself_and_leaves_once_forked():
    from containerlab import cgroups
    from containerlab import namespaces as ns

    cg = cgroups.Cgroup.create(f"clab-test-{os.getpid()}", cgroups.Limits(pids=4))
    try:
        with ns.spawn(["sleep", "30"], new={"pid"}, cgroup=cg) as proc:
            assert cg.pids() == [proc.child_pid]  # born inside; the launcher went back out
            assert cgroups.cgroup_of(proc.pid) == cgroups.cgroup_of("self")
        # And from a single-threaded caller, through the forked launcher:
        res = subprocess.run(
            [sys.executable, "-c", JOINS, f"clab-test-{os.getpid()}-fork"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.stdout.split() == ["_ForkedLauncher", "True"], res.stderr
    finally:
        cg.remove()


def test_a_cgroup_that_cannot_be_joined_fails_the_start(tmp_path):
    from containerlab import cgroups
    from containerlab import namespaces as ns
    from containerlab.errors import NamespaceError

    cg = cgroups.Cgroup.create(f"clab-test-{os.getpid()}")
    try:
        cg.remove()  # gone before the launcher joins: the start fails, nothing runs
        with pytest.raises(NamespaceError, match=r"tasks|cgroup\.procs"):
            ns.spawn(["true"], new={"pid"}, cgroup=cg)
    finally:
        cg.remove()

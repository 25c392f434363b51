"""`containerlab exec` without a terminal: a second process in a running container, through
the real CLI, against the real kernel."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from containerlab.runtime import exec as exec_
from containerlab.runtime import lifecycle

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")
PR_SET_CHILD_SUBREAPER = 36
KINDS = ("pid", "mnt", "uts", "net", "ipc", "cgroup")


def clab(*args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 30)
    return subprocess.run([CLI, *args], capture_output=True, text=True, **kw)


def _children() -> dict[int, tuple[str, str]]:
    """Our child processes: pid -> (state letter, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            out[int(entry)] = (fields[0], cmd)
    return out


@pytest.fixture
def reaper():
    """Orphans come to us, not to a PID 1 that never reaps (as on this machine).

    The supervisor of ``run -d`` and the waiter of ``exec -d`` outlive the CLI that started
    them; on a normal host init adopts and reaps them. Here the test does, and yields a
    function that waits for the adopted ones whose command line has ``marker`` and reaps
    every adopted zombie: pid -> exit code of those reaped by that call (a zombie has no
    command line left to tell which it was).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    reaped: dict[int, int] = {}

    def reap(marker: str = "containerlab.runtime.", timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        already = set(reaped)
        while True:
            adopted = {
                pid: cmd
                for pid, (st, cmd) in _children().items()
                if marker in cmd or (st == "Z" and pid not in reaped)
            }
            for pid in adopted:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    reaped[pid] = os.waitstatus_to_exitcode(status)
            if not {p for p in adopted if p not in reaped} or time.monotonic() > deadline:
                return {p: code for p, code in reaped.items() if p not in already}
            time.sleep(0.05)

    try:
        yield reap
    finally:
        reap()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def box(reaper):
    """A detached busybox container running `sleep`; removed (and its supervisor reaped)."""
    name = f"box-{uuid.uuid4().hex[:8]}"
    res = clab("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert res.returncode == 0, res.stderr
    try:
        yield name
    finally:
        clab("rm", "-f", name)
        reaper()


def test_exit_code_is_the_commands(box):
    assert clab("exec", box, "sh", "-c", "exit 5").returncode == 5


def test_command_not_found_is_127(box):
    res = clab("exec", box, "no-such-command")
    assert res.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in res.stderr


def test_command_not_executable_is_126(box):
    res = clab("exec", box, "/etc/passwd")
    assert res.returncode == 126
    assert '"/etc/passwd"' in res.stderr


def test_env_is_the_containers_plus_e(box, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=yes\n")
    res = clab(
        "exec",
        "-e",
        "FOO=bar baz",
        "--env-file",
        str(env_file),
        box,
        "sh",
        "-c",
        'echo "$FOO|$FROM_FILE|$HOSTNAME|$PATH|$HOME"',
    )
    assert res.returncode == 0, res.stderr
    foo, from_file, hostname, path, home = res.stdout.strip().split("|")
    assert (foo, from_file) == ("bar baz", "yes")
    assert hostname == lifecycle.get(box).config["hostname"]  # recorded by run
    assert "/bin" in path.split(":")
    assert home == "/root"


def test_user_nobody(box):
    res = clab("exec", "-u", "nobody", box, "sh", "-c", "id -u; id -g; echo $HOME")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["65534", "65534", "/nonexistent"]


def test_user_defaults_to_the_containers(reaper):
    name = f"box-{uuid.uuid4().hex[:8]}"
    assert (
        clab("run", "-d", "--name", name, "-u", "nobody", "busybox", "sleep", "60").returncode == 0
    )
    try:
        assert clab("exec", name, "id", "-u").stdout.strip() == "65534"
        assert clab("exec", "-u", "root", name, "id", "-u").stdout.strip() == "0"
    finally:
        clab("rm", "-f", name)


def test_unknown_user_is_126(box):
    res = clab("exec", "-u", "nosuchuser", box, "id")
    assert res.returncode == 126
    assert "unable to find user nosuchuser" in res.stderr


def test_workdir(box):
    assert clab("exec", box, "pwd").stdout == "/\n"
    assert clab("exec", "-w", "/tmp", box, "pwd").stdout == "/tmp\n"


def test_missing_workdir_is_126_and_not_created(box):
    res = clab("exec", "-w", "/no/such/dir", box, "pwd")
    assert res.returncode == 126
    assert "chdir to cwd" in res.stderr and "/no/such/dir" in res.stderr
    assert clab("exec", box, "test", "-e", "/no").returncode == 1


def test_stdin_only_with_i(box):
    res = clab("exec", "-i", box, "tr", "a-z", "A-Z", input="hello\n")
    assert (res.returncode, res.stdout) == (0, "HELLO\n")
    res = clab("exec", box, "cat", input="not passed\n")  # without -i: an empty stdin
    assert (res.returncode, res.stdout) == (0, "")


def test_it_joins_every_namespace_of_the_container(box):
    pid1 = lifecycle.get(box).state.pid
    script = "; ".join(f"readlink /proc/self/ns/{k}" for k in KINDS) + "; echo $$"
    res = clab("exec", box, "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    *links, inner_pid = res.stdout.split()
    for kind, link in zip(KINDS, links, strict=True):
        assert link == os.readlink(f"/proc/{pid1}/ns/{kind}"), kind
        assert link != os.readlink(f"/proc/self/ns/{kind}"), kind
    # A process of the container: a small pid in its PID namespace, not 1 (that is sleep).
    assert 1 < int(inner_pid) < 100
    ps = clab("exec", box, "ps", "-o", "pid,args").stdout.splitlines()
    assert ps[1].split(None, 1) == ["1", "sleep 60"]


def test_exec_into_a_container_that_is_not_running_is_refused(reaper):
    name = f"c-{uuid.uuid4().hex[:8]}"
    assert clab("create", "--name", name, "busybox", "true").returncode == 0
    try:
        res = clab("exec", name, "true")
        assert res.returncode == 1
        assert f"container {name} (" in res.stderr and "is not running" in res.stderr
        assert clab("start", name).returncode == 0
        assert clab("wait", name).stdout.strip() == "0"
        res = clab("exec", name, "true")  # exited now
        assert res.returncode == 1 and "is not running" in res.stderr
    finally:
        clab("rm", "-f", name)
    res = clab("exec", "no-such-container", "true")
    assert res.returncode == 1
    assert "no such container: no-such-container" in res.stderr


def test_a_command_is_required(box):
    res = clab("exec", box)
    assert res.returncode == 125
    assert "exec needs a command" in res.stderr


def test_signals_to_the_cli_reach_the_command(box):
    proc = subprocess.Popen(
        [
            CLI,
            "exec",
            box,
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 42
    assert "got-term" in out


def test_detached_exec_runs_on_after_the_cli_and_its_waiter_is_reaped(box, reaper):
    res = clab("exec", "-d", box, "sh", "-c", "sleep 0.5; echo done > /tmp/flag")
    assert (res.returncode, res.stdout) == (0, "")
    # It runs inside the container, though the CLI has exited.
    cmds = [p["cmd"] for p in lifecycle.processes(box)]
    assert any("echo done > /tmp/flag" in c for c in cmds), cmds
    # The waiter exited with the command's code once it was done, and was reaped (by us,
    # standing in for init): no zombie is left. The supervisor still runs.
    assert list(reaper("containerlab.runtime.exec").values()) == [0]
    assert clab("exec", box, "cat", "/tmp/flag").stdout == "done\n"


def test_detached_exec_errors_are_reported_by_the_cli(box):
    res = clab("exec", "-d", box, "no-such-command")
    assert res.returncode == 127
    assert "executable file not found" in res.stderr


def test_detached_exec_dies_with_its_container(box, reaper):
    assert clab("exec", "-d", box, "sleep", "60").returncode == 0
    assert any(p["cmd"] == "sleep 60" and p["inner_pid"] > 1 for p in lifecycle.processes(box))
    assert clab("rm", "-f", box).returncode == 0
    # PID 1 gone, the kernel killed the rest of its PID namespace: the waiter saw its
    # command die (SIGKILL: 137) and exited; nothing is left (the leak check agrees).
    # (The supervisor, done too, may be among the reaped with its 0.)
    assert 137 in reaper("containerlab.runtime.exec").values()


def test_the_python_api_a_notebook_uses(box):
    spec = exec_.ExecSpec(argv=("sh", "-c", "echo $X; hostname"), env={"X": "from-api"})
    with exec_.spawn(box, spec, stdout=subprocess.PIPE) as proc:
        out, _ = proc.communicate(timeout=20)
        assert proc.wait() == 0
    assert out.decode().split() == ["from-api", lifecycle.get(box).config["hostname"]]
    assert clab("stop", "-t", "0", box).returncode == 0
    with pytest.raises(exec_.ContainerNotRunningError, match="is not running"):
        exec_.spawn(box, spec)

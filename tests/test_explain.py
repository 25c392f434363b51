"""Explain mode shows a container start's kernel steps to whoever started it, whatever the
kind of start: in the foreground, detached (``run -d``, ``start``) or on a terminal
(``run -it``); and never in what the container prints, nor anywhere when it is off.

A detached container is started by its supervisor, and the steps inside by the launcher,
whose fds 0-2 are the container's stdio by then: both must explain into the CLI's stderr
until the command has started, and let go of it after (they outlive the CLI)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.test_tty import PROMPT

MODES = ("fork", "exec")  # CONTAINERLAB_LAUNCHER: the forked launcher, or re-executed
# The steps each part of a start takes: the supervisor (the cgroup) and the launcher
# (namespaces, then the root filesystem, before and after pivot_root).
STEPS = (
    "$ mkdir /sys/fs/cgroup/",
    "$ unshare --mount --uts --ipc --net --pid",
    "$ mount -t overlay",
    "$ mount -t proc",
    "$ pivot_root . .",
    "$ umount -l .",
)
# The container's command: what it prints on both streams, and which descriptors it has
# (0, 1 and 2 only: nothing of its starter's leaks in).
COMMAND = ("busybox", "sh", "-c", "ls /proc/$$/fd; echo err >&2")


def clab(*args: str, mode: str = "fork", timeout: float = 30, **env: str):
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CONTAINERLAB_LAUNCHER": mode, **env},
    )


def ok(*args: str, **kw) -> subprocess.CompletedProcess:
    res = clab(*args, **kw)
    assert res.returncode == 0, f"{args}: rc={res.returncode} {res.stderr}"
    return res


def assert_explained(err: str) -> None:
    """Every step on stderr, each one whole: nothing but explain lines."""
    for step in STEPS:
        assert step in err, step
    assert all(line.startswith(("[explain] ", "          $ ")) for line in err.splitlines()), err


def logs_after_exit(cid: str) -> subprocess.CompletedProcess:
    assert ok("wait", cid).stdout.strip() == "0"
    return ok("logs", cid)


def supervisor_log(root: Path, cid: str) -> str:
    return (root / "containers" / cid / "supervisor.log").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_run_d_explains_on_the_clis_stderr_not_in_the_containers_log(clab_root, mode):
    res = ok("run", "-d", "--network", "none", "--explain", *COMMAND, mode=mode)
    cid = res.stdout.strip()
    try:
        assert_explained(res.stderr)
        logs = logs_after_exit(cid)
        assert (logs.stdout, logs.stderr) == ("0\n1\n2\n", "err\n")
        # The start's steps were the CLI's; only what came after (the cgroup's removal once
        # the command exited) is the supervisor's own, in its log.
        sup = supervisor_log(clab_root, cid)
        assert "unshare" not in sup and "pivot_root" not in sup and "mkdir" not in sup
    finally:
        ok("rm", "-f", cid)


@pytest.mark.parametrize("mode", MODES)
def test_run_d_explain_lets_go_of_the_clis_stderr_once_started(mode):
    # Captured stderr is a pipe read to its end: a supervisor, a launcher or an init that
    # kept it open would hold this CLI for the container's whole life (60 s).
    for init in ((), ("--init",)):
        args = ("run", "-d", "--network", "none", "--explain", *init, "busybox", "sleep", "60")
        res = ok(*args, mode=mode, timeout=20)
        try:
            assert "pivot_root" in res.stderr
        finally:
            ok("rm", "-f", res.stdout.strip())


@pytest.mark.parametrize("mode", MODES)
def test_foreground_run_explains_next_to_the_containers_own_stderr(mode):
    res = ok("run", "--rm", "--network", "none", "--explain", *COMMAND, mode=mode)
    assert res.stdout == "0\n1\n2\n"
    lines = res.stderr.splitlines()
    assert lines.count("err") == 1
    lines.remove("err")
    assert_explained("\n".join(lines))


def test_start_explains_with_the_environment_variable(clab_root):
    cid = ok("create", "--network", "none", *COMMAND).stdout.strip()
    try:
        res = ok("start", cid, CONTAINERLAB_EXPLAIN="1")
        assert res.stdout.strip() == cid
        assert_explained(res.stderr)
        logs = logs_after_exit(cid)
        assert (logs.stdout, logs.stderr) == ("0\n1\n2\n", "err\n")
    finally:
        ok("rm", "-f", cid)


def test_run_it_explains_on_the_terminal_and_the_session_works(term):
    t = term("run", "-it", "--rm", "--network", "none", "--explain", "busybox", "sh")
    for step in STEPS:
        t.expect(step.encode())
    t.expect(PROMPT)
    t.line("echo hi-$((1+1))", b"hi-2")
    t.send(b"exit 3\r")
    assert t.wait() == 3
    # Every step came before the shell's first prompt: nothing explained after the start.
    assert b"[explain]" not in t.out[t.out.index(b"BusyBox") :]


def test_without_explain_nothing_is_explained_anywhere(clab_root, term):
    res = ok("run", "-d", "--network", "none", *COMMAND)
    cid = res.stdout.strip()
    try:
        assert res.stderr == ""
        logs = logs_after_exit(cid)
        assert (logs.stdout, logs.stderr) == ("0\n1\n2\n", "err\n")
        assert "[explain]" not in supervisor_log(clab_root, cid)
    finally:
        ok("rm", "-f", cid)
    res = ok("run", "--rm", "--network", "none", *COMMAND)
    assert (res.stdout, res.stderr) == ("0\n1\n2\n", "err\n")
    t = term("run", "-it", "--rm", "--network", "none", "busybox", "sh")
    t.expect(PROMPT)
    t.send(b"exit\r")
    assert t.wait() == 0
    assert b"[explain]" not in t.out

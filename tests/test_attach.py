"""Detach keys and ``containerlab attach``, driven through real pseudo-terminals.

``run -it`` hands the container's terminal to its supervisor and attaches to it; Ctrl-P
Ctrl-Q (``\\x10\\x11``) leaves the container running, ``attach`` comes back. The Terminal
helper (from test_tty) holds the master side of a pty with the CLI on its slave side.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import uuid

import pytest
from test_tty import CLI, PROMPT

from containerlab.runtime import attach

DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q


def clab(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def status(name: str) -> str:
    res = clab("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    for line in res.stdout.splitlines():
        if line.split()[0] == name:
            return line.split(None, 1)[1]
    return "gone"


def wait_status(name: str, prefix: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        now = status(name)
        if now.startswith(prefix) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def name() -> str:
    return f"att-{uuid.uuid4().hex[:8]}"


def detached_shell(n: str) -> None:
    """``run -dit``: a shell on a terminal, nobody attached."""
    res = clab("run", "-dit", "--name", n, "busybox", "sh")
    assert res.returncode == 0, res.stderr


# --- through the CLI --------------------------------------------------------------------------
def test_detach_from_run_it_then_attach_type_and_exit_with_the_shells_code(term, clab_root):
    n = name()
    t = term("run", "-it", "--name", n, "busybox", "sh")
    t.expect(PROMPT)
    t.line("echo before-$((20+1))", b"before-21")
    t.expect(PROMPT)
    t.send(DETACH)
    assert t.wait() == 0  # detached: the CLI is done, the container is not
    assert t.out[t.pos :] == b""  # and printed nothing else
    assert t.mode_now() == t.mode_before
    assert wait_status(n, "Up").startswith("Up")

    cdir = clab_root / "containers" / json.loads(clab("inspect", n).stdout)[0]["Id"]
    mode = os.stat(cdir / "attach.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    a = term("attach", n)
    time.sleep(0.2)  # nothing is redrawn on attach (as in Docker): just type
    a.line("echo back-$((6*7))", b"back-42")
    a.expect(PROMPT)
    a.line("tty", re.compile(rb"/dev/pts/0"))  # the same terminal as before the detach
    a.send(b"exit 5\r")
    assert a.wait() == 5
    assert a.mode_now() == a.mode_before
    assert wait_status(n, "Exited").startswith("Exited (5)")
    assert not (cdir / "attach.sock").exists()
    # What the shell printed while nobody was attached is in the log, as for run -dt.
    assert b"back-42" in subprocess.run([CLI, "logs", n], capture_output=True).stdout


def test_run_it_rm_detach_then_exit_removes_it(term):
    n = name()
    t = term("run", "-it", "--rm", "--name", n, "busybox", "sh")
    t.expect(PROMPT)
    t.send(DETACH)
    assert t.wait() == 0
    assert wait_status(n, "Up").startswith("Up")
    a = term("attach", n)
    time.sleep(0.2)
    a.send(b"exit 2\r")
    assert a.wait() == 2  # the exit code arrives after the removal: nothing is left
    assert status(n) == "gone"


def test_window_size_is_passed_on_at_attach_and_on_resize(term):
    n = name()
    detached_shell(n)
    a = term("attach", n, rows=21, cols=77)
    time.sleep(0.2)
    a.line("stty size", b"21 77")
    a.expect(PROMPT)
    a.set_size(30, 100)  # SIGWINCH to the client, a resize frame to the supervisor
    deadline = time.monotonic() + 10
    while True:
        out = a.line("stty size", re.compile(rb"(\d+ \d+)")).group(1)
        a.expect(PROMPT)
        if out == b"30 100" or time.monotonic() > deadline:
            break
    assert out == b"30 100"
    a.send(DETACH)
    assert a.wait() == 0
    assert status(n).startswith("Up")


def test_two_clients_see_the_same_output_and_either_can_type(term):
    n = name()
    detached_shell(n)
    one = term("attach", n)
    two = term("attach", n)
    time.sleep(0.3)  # both connected
    one.line("echo from-one-$((1+1))", b"from-one-2")
    two.expect(b"from-one-2")  # typed in one, echoed and answered in both
    two.line("echo from-two-$((2+2))", b"from-two-4")
    one.expect(b"from-two-4")
    two.send(DETACH)  # one leaves; the other stays attached
    assert two.wait() == 0
    one.expect(PROMPT)
    one.line("echo still-$((3+3))", b"still-6")
    one.send(b"exit 3\r")
    assert one.wait() == 3


def test_ctrl_c_after_attach_interrupts_the_job_not_the_shell(term):
    n = name()
    detached_shell(n)
    a = term("attach", n)
    time.sleep(0.2)
    a.send(b"sleep 30\r")
    a.expect(b"sleep 30")
    time.sleep(0.3)
    a.send(b"\x03")
    a.expect(PROMPT)
    a.line("echo status=$?", b"status=130")
    a.expect(PROMPT)
    a.send(b"\x04")  # Ctrl-D: the shell exits with the last status (echo's 0)
    assert a.wait() == 0
    assert wait_status(n, "Exited").startswith("Exited (0)")


def test_custom_detach_keys_and_a_false_start_passed_on(term):
    n = name()
    t = term("run", "-it", "--detach-keys", "ctrl-x,d", "--name", n, "busybox", "sh")
    t.expect(PROMPT)
    t.send(b"\x10\x11")  # Docker's keys mean nothing now: passed on to the shell
    t.send(b"\x18")  # ctrl-x held back, then...
    t.send(b"echo x-$((4+4))\r")  # ...not followed by d: both go to the shell
    t.expect(b"x-8")
    t.expect(PROMPT)
    assert status(n).startswith("Up")
    t.send(b"\x18d")
    assert t.wait() == 0
    assert status(n).startswith("Up")


def test_start_ai_attaches_to_a_tty_container_and_detaches(term):
    n = name()
    assert clab("create", "-it", "--name", n, "busybox", "sh").returncode == 0
    t = term("start", "-ai", n)
    t.expect(PROMPT)
    t.send(DETACH)
    assert t.wait() == 0
    assert wait_status(n, "Up").startswith("Up")
    again = term("start", "-ai", n)  # running: start -a attaches
    time.sleep(0.2)
    again.send(b"exit 9\r")
    assert again.wait() == 9


def test_bad_detach_keys_are_refused_with_125_before_anything_is_made(term):
    for args in (
        ("run", "-it", "--detach-keys", "ctrl-pp", "busybox", "sh"),
        ("run", "-d", "--detach-keys", "ctrl-", "busybox", "true"),
        ("attach", "--detach-keys", "ctrl-1", "whatever"),
    ):
        res = clab(*args)
        assert res.returncode == 125, (args, res)
        assert "invalid detach keys" in res.stderr and "ctrl-p,ctrl-q" in res.stderr
    assert clab("ps", "-aq").stdout == ""


def test_attach_to_a_container_that_is_not_running_says_so(term):
    n = name()
    assert clab("create", "-t", "--name", n, "busybox", "sh").returncode == 0
    res = clab("attach", n)
    assert res.returncode == 1
    assert "not running; start it first" in res.stderr
    assert clab("attach", "no-such-box").returncode == 1


def test_attach_without_a_terminal_follows_the_output_until_the_exit_code(term):
    n = name()
    res = clab(
        "run", "-d", "--name", n, "busybox", "sh", "-c", "echo early; sleep 1.5; echo late; exit 6"
    )
    assert res.returncode == 0, res.stderr
    got = subprocess.run([CLI, "attach", n], capture_output=True, text=True, timeout=30)
    assert (got.returncode, got.stdout) == (6, "late\n")  # from now on, as logs -f --tail 0


def test_run_it_of_a_missing_command_is_127_and_leaves_no_container(term):
    t = term("run", "-it", "--rm", "busybox", "no-such-command")
    assert t.wait() == 127
    assert b"no-such-command" in t.out
    assert clab("ps", "-aq").stdout == ""


# --- the pieces -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "codes"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("a,ctrl-A", b"a\x01"),
        (None, b"\x10\x11"),
    ],
)
def test_parse_detach_keys(spec, codes):
    assert attach.parse_detach_keys(spec) == codes


@pytest.mark.parametrize("spec", ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q", "é"])
def test_parse_detach_keys_refuses(spec):
    with pytest.raises(attach.ContainerError, match="invalid detach keys"):
        attach.parse_detach_keys(spec)


def test_detach_keys_hold_a_prefix_and_release_it_on_a_mismatch():
    keys = attach.DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)  # Ctrl-P held back
    assert keys.feed(b"x") == (b"\x10x", False)  # not followed by Ctrl-Q: passed on
    assert keys.feed(b"\x10\x10") == (b"\x10", False)  # the second may still start it
    assert keys.feed(b"\x11rest") == (b"", True)  # detached; the rest is dropped
    assert attach.DetachKeys(b"\x01").feed(b"ab\x01c") == (b"ab", True)


def test_frames_arrive_in_pieces_and_oversize_is_refused():
    data = attach.frame(attach.STDOUT, b"hello") + attach.frame(attach.EXIT, b"\0\0\0\x07")
    frames = attach.Frames()
    got = []
    for i in range(len(data)):
        got += list(frames.feed(data[i : i + 1]))
    assert got == [(attach.STDOUT, b"hello"), (attach.EXIT, b"\0\0\0\x07")]
    assert data[:8] == b"\x01\0\0\0\0\0\0\x05"  # Docker's stdcopy header: type, 0 0 0, length
    with pytest.raises(ValueError):
        list(attach.Frames().feed(attach.HEADER.pack(attach.STDIN, attach.MAX_FRAME + 1)))


def test_a_cli_gone_before_it_attached_leaves_the_container_unstarted(clab_root):
    """`run -it` whose CLI dies between create and attach: the supervisor gives up, nothing
    runs, and a --rm container is removed (as a `create` that was never started)."""
    from containerlab.runtime import container, state, supervisor
    from containerlab.runtime.spec import ContainerSpec

    cids = [
        container.create(
            ContainerSpec(image="busybox", argv=("sh",), tty=True, interactive=True, auto_remove=rm)
        ).id
        for rm in (False, True)
    ]

    def die() -> None:
        raise RuntimeError("the CLI died")

    for cid in cids:
        with pytest.raises(RuntimeError):
            supervisor.start_detached(cid, before_start=die)
    deadline = time.monotonic() + 10
    while cids[1] in state.all_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.all_ids() == [cids[0]]
    assert state.load(cids[0]).state.status == "created"

"""`run -it` and `exec -it` driven through a real pseudo-terminal, as a person at a terminal.

The test holds the master side of a pty (what a terminal emulator holds); the CLI runs on
the slave side as its controlling terminal, exactly as in a shell. Keys are bytes written to
the master: ``\\r`` is Enter, ``\\x03`` Ctrl-C, ``\\x04`` Ctrl-D.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid

import pytest

from containerlab.runtime import lifecycle

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")
PR_SET_CHILD_SUBREAPER = 36
# busybox sh's prompt for root; its line editor then asks where the cursor is (ESC [6n).
PROMPT = re.compile(rb"/ # (?:\x1b\[6n)?")


class Terminal:
    """The CLI on a new pseudo-terminal of ``rows`` x ``cols``: type, expect, wait."""

    def __init__(self, args: list[str], rows: int = 33, cols: int = 111):
        self.master, slave = os.openpty()
        self.set_size(rows, cols, fd=slave)
        self.mode_before = termios.tcgetattr(slave)  # the cooked mode a shell leaves
        self.out = b""
        self.pos = 0  # how far expect() has consumed the output
        self.pid = os.fork()  # pytest runs tests in one thread: forking it is safe
        if self.pid == 0:
            try:
                os.close(self.master)
                os.setsid()  # a session of its own, with this terminal controlling it
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                os.close(slave)
                os.execv(CLI, [CLI, *args])
            finally:
                os._exit(127)
        os.close(slave)
        self.code: int | None = None

    def set_size(self, rows: int, cols: int, fd: int | None = None) -> None:
        """A terminal window resize: the kernel sends SIGWINCH to the CLI."""
        size = struct.pack("HHHH", rows, cols, 0, 0)
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, size)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI (and all else on the slave side) has exited
            data = b""
        self.out += data
        return bool(data)

    def expect(self, pattern: bytes | re.Pattern, timeout: float = 15.0) -> re.Match:
        """Wait for ``pattern`` in the output not consumed yet; consume up to its end."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.out, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                m = regex.search(self.out, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise AssertionError(f"{pattern!r} not seen; output so far: {self.out!r}")

    def line(self, command: str, pattern: bytes | re.Pattern, timeout: float = 15.0):
        """Type a command and Enter; the match of ``pattern`` in what follows."""
        self.send(command.encode() + b"\r")
        self.expect(command.encode())  # its echo: look for the result after it
        return self.expect(pattern, timeout)

    def wait(self, timeout: float = 20.0) -> int:
        """Read to the end (the CLI exits) and return its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.code = os.waitstatus_to_exitcode(status)
                while self._read(0.05):
                    pass
                return self.code
            self._read(0.1)
        raise AssertionError(f"the CLI did not exit; output: {self.out!r}")

    def mode_now(self) -> list:
        return termios.tcgetattr(self.master)  # on a pty master: the slave's mode

    def close(self) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.code = -1
        os.close(self.master)


@pytest.fixture
def box():
    """A detached container, and orphans reaped by us (PID 1 here never reaps)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    name = f"box-{uuid.uuid4().hex[:8]}"
    res = subprocess.run(
        [CLI, "run", "-d", "--name", name, "busybox", "sleep", "60"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    try:
        yield name
    finally:
        subprocess.run([CLI, "rm", "-f", name], capture_output=True, timeout=30)
        _reap_adopted()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap_adopted(timeout: float = 15.0) -> None:
    """Wait for the supervisor we adopted when `run -d` exited, and reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
            except (OSError, ValueError):
                continue
            if ppid == os.getpid() and (b"containerlab.runtime." in cmd or not cmd):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(int(entry), os.WNOHANG)[0] == 0:
                        left.append(entry)
        if not left:
            return
        time.sleep(0.05)


def test_a_shell_on_a_terminal_runs_commands_and_exits_with_its_code(term):
    t = term("run", "-it", "--rm", "busybox", "sh")
    t.expect(PROMPT)
    t.line("echo hi-$((1+1))", b"hi-2")
    t.line("tty", re.compile(rb"/dev/pts/\d+"))  # its own terminal, named inside
    t.send(b"exit 7\r")
    assert t.wait() == 7
    assert t.mode_now() == t.mode_before  # raw mode undone on the way out


def test_window_size_is_copied_and_resizes_are_passed_on(term):
    t = term("run", "-it", "--rm", "busybox", "sh", rows=33, cols=111)
    t.expect(PROMPT)
    t.line("stty size", b"33 111")
    t.expect(PROMPT)
    t.set_size(40, 120)  # SIGWINCH to the CLI, which sets the container's terminal
    deadline = time.monotonic() + 10
    while True:
        out = t.line("stty size", re.compile(rb"(\d+ \d+)")).group(1)
        t.expect(PROMPT)
        if out == b"40 120" or time.monotonic() > deadline:
            break
    assert out == b"40 120"
    t.send(b"exit\r")
    assert t.wait() == 0


def test_ctrl_c_interrupts_the_foreground_job_not_the_shell(term):
    t = term("run", "-it", "--rm", "busybox", "sh")
    t.expect(PROMPT)
    started = time.monotonic()
    t.send(b"sleep 30\r")
    t.expect(b"sleep 30")
    time.sleep(0.3)  # let the shell start it
    t.send(b"\x03")  # Ctrl-C: a byte to the container's terminal, SIGINT to its job
    t.expect(PROMPT)
    t.line("echo alive-$((2+3))", b"alive-5")
    assert time.monotonic() - started < 15
    t.send(b"exit 3\r")
    assert t.wait() == 3


def test_ctrl_d_at_the_prompt_ends_the_shell_and_the_cli_exits_0(term):
    t = term("run", "-it", "--rm", "busybox", "sh")
    t.expect(PROMPT)
    t.send(b"\x04")
    assert t.wait() == 0
    assert t.mode_now() == t.mode_before


def test_run_t_without_a_terminal_still_gives_the_container_one():
    res = subprocess.run(
        [CLI, "run", "-t", "--rm", "busybox", "tty"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", res.stdout)  # \r\n: a terminal's output


def test_exec_it_into_a_detached_container(term, box):
    rec = lifecycle.get(box)
    t = term("exec", "-it", box, "sh")
    t.expect(PROMPT)
    t.line("hostname", rec.config["hostname"].encode())
    t.expect(PROMPT)
    ps = t.line("ps -o pid,args", re.compile(rb"PID.*?(?=/ # )", re.S)).group(0).decode()
    rows = [line.split(None, 1) for line in ps.splitlines()[1:]]
    assert rows[0] == ["1", "sleep 60"]  # the container's processes, its PID 1 first
    assert any(args.startswith("sh") for _pid, args in rows[1:])
    t.line("tty; echo $TERM", re.compile(rb"/dev/pts/\d+\r\nxterm"))
    t.send(b"exit 4\r")
    assert t.wait() == 4
    assert t.mode_now() == t.mode_before
    assert lifecycle.get(box).running  # the container runs on: exec ended, not PID 1


def test_exec_t_ctrl_c_and_window_size(term, box):
    t = term("exec", "-it", box, "sh", rows=25, cols=90)
    t.expect(PROMPT)
    t.line("stty size", b"25 90")
    t.send(b"sleep 30\r")
    t.expect(b"sleep 30")
    time.sleep(0.3)
    t.send(b"\x03")
    t.expect(PROMPT)
    t.line("echo status=$?", b"status=130")  # 128 + SIGINT: the job died of Ctrl-C
    t.expect(PROMPT)
    t.send(b"\x04")  # Ctrl-D exits with the last status: echo's 0
    assert t.wait() == 0


def test_run_dt_gives_the_detached_container_a_terminal_of_its_own():
    """`run -dt`: the supervisor holds the master of a terminal made inside the container
    (as `docker run -dt`), so `tty` names it and its output is logged with CRLF."""
    res = subprocess.run(
        [CLI, "run", "-dt", "busybox", "sh", "-c", "tty; echo done"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    try:
        code = subprocess.run([CLI, "wait", cid], capture_output=True, text=True, timeout=30)
        assert code.stdout.strip() == "0"
        logs = subprocess.run([CLI, "logs", cid], capture_output=True, timeout=30)
        assert logs.stdout == b"/dev/pts/0\r\ndone\r\n"
    finally:
        subprocess.run([CLI, "rm", "-f", cid], capture_output=True, timeout=30)

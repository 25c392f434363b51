"""``containerlab exec``: one more process inside a running container, as ``docker exec``.

A container is nothing but processes sharing namespaces, so "entering" one is joining the
namespaces of its PID 1 (``setns``, what ``nsenter -t PID -a`` does): every kind that differs
from ours, the PID namespace included. Joining a PID namespace only affects children, so
the launcher (``containerlab.nsexec``) forks once after joining; the command is that child,
a process of the container (``ps`` inside shows it, with a small pid). Joining the mount
namespace puts the process at the container's root: ``/etc/passwd`` is the container's, so
``-u nobody`` is resolved there (``runtime.init.exec_setup``), and so is ``-w``.

Nothing is mounted and nothing is recorded: the process lives as long as its command, and
dies with the container (when PID 1 of a PID namespace exits, the kernel kills every other
process in it).

Exit codes, as Docker's: the command's own; 127 when it is not found, 126 when it cannot be
run (not executable, unknown user, missing ``-w`` directory: Docker reports every "OCI
runtime exec failed" as 126); 1 when the container is missing, not running or paused
(Docker: "Error response from daemon: container X is not running").

``-d`` (detached): nobody waits in the foreground, yet somebody must ``wait()`` for the
launcher or it stays a zombie, and the launcher dies with its parent (parent-death
signal). So a detached exec is started under a small *waiter*
(``python -m containerlab.runtime.exec FD``, in its own session like the supervisor of
``run -d``), which reports that the command started, then waits for it and exits. The
waiter itself is an orphan once the CLI exits, adopted (and reaped) by the host's init, as
the supervisor of ``run -d`` is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from containerlab import namespaces
from containerlab.errors import (
    CommandNotExecutableError,
    CommandNotFoundError,
    ContainerError,
    ContainerlabError,
    NamespaceError,
)
from containerlab.runtime import lifecycle, state, tty

#: What the launcher runs inside the container, after joining it and before exec.
EXEC_ENTRY = "containerlab.runtime.init:exec_setup"

#: Signals a foreground exec passes on to its command (as `run` does).
PROXIED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class ContainerNotRunningError(ContainerError):
    """``exec`` into a container that is created, exited or paused (Docker exits 1)."""

    exit_code = 1


class ExecFailedError(CommandNotExecutableError):
    """The launcher could not set the command up inside the container (Docker: 126)."""


@dataclass(frozen=True)
class ExecSpec:
    """What ``exec`` runs and how; unset fields come from the container's config."""

    argv: tuple[str, ...]  # the command and its arguments (no image Cmd: it is required)
    env: Mapping[str, str] = field(default_factory=dict)  # -e, on top of the container's env
    user: str | None = None  # -u USER[:GROUP]; None: the container's user
    workdir: str | None = None  # -w DIR; None: the container's working directory
    tty: bool = False  # -t: a pseudo-terminal of the container's own
    interactive: bool = False  # -i: our stdin is passed on


def target(name_or_id: str) -> state.Record:
    """The container to exec into; refused (exit 1, as Docker) unless it is running."""
    rec = lifecycle.get(name_or_id)
    if rec.state.status == "paused":
        raise ContainerNotRunningError(
            f"container {rec.name} ({rec.short_id}) is paused; unpause it before exec"
        )
    if rec.state.status != "running" or not state.alive(rec.state.pid, rec.state.pid_start):
        raise ContainerNotRunningError(
            f"container {rec.name} ({rec.short_id}) is not running; "
            f"start it first: containerlab start {rec.name or rec.short_id}"
        )
    return rec


def environment(rec: state.Record, spec: ExecSpec) -> dict[str, str]:
    """The container's recorded env, then ``-e``; TERM for a terminal, as Docker sets it."""
    env = {**rec.config.get("env", {}), **spec.env}
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return env


def namespaces_to_join(pid: int) -> dict[str, int]:
    """Every namespace of ``pid`` that is not also ours: kind -> pid."""
    return {kind: pid for kind, same in namespaces.shared("self", pid).items() if not same}


def spawn(
    name_or_id: str,
    spec: ExecSpec,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    console: bool = False,
) -> namespaces.NsProcess:
    """Start ``spec.argv`` inside the running container; returns once it has been exec'd.

    The caller must ``wait()`` for the returned process (or ``close()`` it). ``console``:
    ``stdin`` is a Unix socket over which the container's own terminal comes back (see
    ``tty.receive_console``).
    """
    if not spec.argv:
        raise ContainerlabError("exec needs a command: containerlab exec CONTAINER COMMAND")
    rec = target(name_or_id)
    cfg = rec.config
    payload = {
        "workdir": spec.workdir or cfg.get("workdir") or "/",
        "user": spec.user if spec.user is not None else cfg.get("user") or "",
        "console": console,
    }
    join = namespaces_to_join(rec.state.pid)
    from containerlab.runtime.container import open_cgroup

    cg = open_cgroup(cfg)
    try:
        proc = namespaces.spawn(
            spec.argv,
            namespaces.NamespaceSpec(join=join),
            env=environment(rec, spec),
            setup=(EXEC_ENTRY, payload),
            tty=spec.tty,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            # The launcher joins the container's cgroup before it forks, so the exec'd
            # command is born inside: counted and limited with the container, as runc exec.
            cgroup=cg,
        )
    except (CommandNotFoundError, CommandNotExecutableError):
        raise
    except NamespaceError as e:
        # The PID 1 we joined may have exited between the check and the join.
        if not state.alive(rec.state.pid, rec.state.pid_start):
            raise ContainerNotRunningError(
                f"container {rec.name} ({rec.short_id}) is not running"
            ) from None
        raise ExecFailedError(f"exec failed: {e}") from None
    return proc


def run(name_or_id: str, spec: ExecSpec, *, proxy_signals: bool = False, **stdio: Any) -> int:
    """Run a command in the container to completion, without a terminal; its exit code.

    With ``proxy_signals`` (the CLI sets it), the signals this process gets go to the
    command instead of killing us: Ctrl-C stops the command, as it would outside.
    """
    # The handlers go in before the command starts: it may be running (and the caller may
    # signal us) before spawn() returns. A signal that comes before then is held back and
    # delivered once the command exists.
    proc: namespaces.NsProcess | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if proc is None:
            pending.append(signum)
        else:
            _signal(proc, signum)

    previous = {s: signal.signal(s, forward) for s in PROXIED_SIGNALS} if proxy_signals else {}
    try:
        proc = spawn(name_or_id, spec, **stdio)
        for signum in pending:
            _signal(proc, signum)
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc is not None:
            proc.close()


def _signal(proc: namespaces.NsProcess, sig: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def run_attached(name_or_id: str, spec: ExecSpec, *, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """``exec -t``: the command on a terminal of the container's own, relayed to ours."""
    ours, theirs = tty.console_socket()
    with ours:
        try:
            proc = spawn(name_or_id, spec, stdin=theirs.fileno(), console=True)
        finally:
            theirs.close()
        try:
            master = tty.receive_console(ours)
        except BaseException:
            proc.close()
            raise
    try:
        tty.attach(
            master, proc.pid, stdin_fd=stdin_fd, stdout_fd=stdout_fd, interactive=spec.interactive
        )
        return proc.wait()
    finally:
        os.close(master)
        proc.close()


# --- detached: a waiter that outlives the CLI ------------------------------------------------
def start_detached(name_or_id: str, spec: ExecSpec) -> int:
    """``exec -d``: start the command under a waiter and return its pid (as the host sees it).

    Output is discarded, as Docker does for a detached exec. With ``-t`` the command still
    gets a terminal (``exec -dit CONTAINER sh`` keeps a shell alive); the waiter holds it.
    """
    rec = target(name_or_id)  # fail here, with the message, rather than in the waiter
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        try:
            with open(rec.dir / "exec.log", "ab") as errlog:
                subprocess.Popen(
                    [sys.executable, "-m", "containerlab.runtime.exec", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=errlog,
                    stderr=errlog,
                    start_new_session=True,  # the CLI's Ctrl-C and hang-up do not reach it
                )
        finally:
            theirs.close()
        request = {
            "container": rec.id,
            "argv": list(spec.argv),
            "env": dict(spec.env),
            "user": spec.user,
            "workdir": spec.workdir,
            "tty": spec.tty,
        }
        ours.sendall(json.dumps(request).encode() + b"\n")
        with ours.makefile("rb") as f:
            line = f.readline()
    if not line:
        raise ContainerlabError(
            f"the exec waiter died before starting the command; see {rec.dir / 'exec.log'}"
        )
    msg = json.loads(line)
    if msg["event"] == "error":
        err = ContainerlabError(msg["message"])
        err.exit_code = msg["code"]
        raise err
    return int(msg["pid"])


def _wait_detached(sock: socket.socket) -> int:
    """The waiter: start the command, say so (or why not), then wait for it."""
    with sock.makefile("rb") as f:
        request = json.loads(f.readline())
    spec = ExecSpec(
        argv=tuple(request["argv"]),
        env=request["env"],
        user=request["user"],
        workdir=request["workdir"],
        tty=request["tty"],
    )
    devnull = os.open(os.devnull, os.O_RDWR)
    console = None
    try:
        if spec.tty:
            console, theirs = tty.console_socket()
            stdio: dict[str, Any] = {"stdin": theirs.fileno(), "console": True}
        else:
            theirs = None
            stdio = {"stdin": devnull, "stdout": devnull, "stderr": devnull}
        try:
            proc = spawn(request["container"], spec, **stdio)
        finally:
            if theirs is not None:
                theirs.close()
        master = tty.receive_console(console) if console is not None else None
    except (ContainerlabError, OSError) as e:
        code = getattr(e, "exit_code", 125)
        reply = {"event": "error", "code": code, "message": str(e)}
        sock.sendall(json.dumps(reply).encode() + b"\n")
        return code
    sock.sendall(json.dumps({"event": "started", "pid": proc.child_pid}).encode() + b"\n")
    sock.close()
    if master is not None:
        # Keep the terminal open and read it (a full terminal would block the command);
        # what it prints goes nowhere, as for any detached exec.
        pidfd = os.pidfd_open(proc.pid)
        try:
            tty.relay(master, stdout_fd=devnull, interactive=False, until=pidfd)
        finally:
            os.close(pidfd)
            os.close(master)
    code = proc.wait()
    proc.close()
    return code


def main() -> None:
    # Our own session already; never die of a terminal's hang-up or Ctrl-C.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(_wait_detached(socket.socket(fileno=int(sys.argv[1]))))


if __name__ == "__main__":
    main()

"""The supervisor of a detached container: the role conmon (podman) or containerd-shim
(docker) plays.

``run -d`` must return at once, yet somebody has to stay: to hold the container's stdio
(if nobody reads its stdout, the command blocks once the pipe is full), write it to the
log, wait for the command, record its exit code and time, and remove it if ``--rm`` was
asked. That is this process: ``python -m containerlab.runtime.supervisor ID FD``, started in
a session of its own so it outlives the CLI that started it. It tells the CLI over ``FD``
whether the command started (or why not), then closes it. It is a child subreaper, and
the container's PID 1 is its own child once the launcher that forked it has exited (see
``namespaces.spawn(adopt=True)``): no launcher stays to wait, as none does under
containerd-shim.

A ``-t`` container's terminal is held here too: its master is what the command's output
is read from, and clients attach to it through ``attach.sock`` in the container's
directory (see ``runtime.attach``): that is what lets ``run -it`` detach (Ctrl-P Ctrl-Q)
and ``containerlab attach`` come back, as containerd-shim lets ``docker attach`` do.

Logs are JSON lines, as Docker's json-file driver writes them:
``{"log": "hello\\n", "stream": "stdout", "time": "2026-11-28T12:00:00.123456789Z"}``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys

from containerlab.errors import ContainerlabError

# Only what the watcher needs is imported here (see ``watch``); the runtime is imported
# where it is used, so the process that stays with an idle container stays small.
from containerlab.runtime.clock import now

# Types for annotations only (see state.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from containerlab.runtime import state

LOG_NAME = "container.log"


class LogWriter:
    """Turns the command's output into log lines, split at newlines, one stream each."""

    def __init__(self, path: str | int):
        # A path, or the descriptor of one already open (the watcher inherits it).
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115  (closed in close())
        self.partial: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.partial.get(stream, b"") + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._write(stream, line + b"\n")
        # A line longer than 16 kB is cut, as Docker does, so one line cannot grow forever.
        while len(rest) > 16384:
            self._write(stream, rest[:16384])
            rest = rest[16384:]
        self.partial[stream] = rest

    def _write(self, stream: str, data: bytes) -> None:
        entry = {"log": data.decode(errors="replace"), "stream": stream, "time": now()}
        self.file.write(json.dumps(entry).encode() + b"\n")

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._write(stream, rest)
        self.file.close()


def _launch(rec: state.Record, report_fd: int, stdio: dict[str, int], **kw: object):
    """Launch the container (we adopt its PID 1) on ``stdio``, whose descriptors are then
    closed here: the container holds its own copies. The process, or the exit code of a
    start that failed, which the CLI has been told."""
    from containerlab.runtime import container

    try:
        return container.launch(rec, adopt=True, **stdio, **kw)
    except (ContainerlabError, OSError) as e:
        code = getattr(e, "exit_code", 125)
        _report(report_fd, {"event": "error", "code": code, "message": str(e)})
        return code
    finally:
        for fd in set(stdio.values()):
            os.close(fd)


def supervise(cid: str, report_fd: int, attach_first: bool = False) -> int:
    from containerlab.runtime import state

    rec = state.load(cid)
    if rec.config.get("tty"):
        return _supervise_terminal(rec, report_fd, attach_first)
    log = LogWriter(str(rec.dir / LOG_NAME))
    devnull = os.open(os.devnull, os.O_RDWR)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdio = {"stdin": devnull, "stdout": out_w, "stderr": err_w}
    sources = {out_r: "stdout", err_r: "stderr"}
    proc = _launch(rec, report_fd, stdio)  # only the container holds the writing ends then
    if isinstance(proc, int):
        return proc
    _report(report_fd, {"event": "started", "pid": proc.child_pid})
    # Starting a container took the whole runtime (image store, cgroups, networking...);
    # waiting for it takes a loop over two pipes. Python never gives imported modules' memory
    # back, so we exec a fresh interpreter that imports only the loop: same pid (PID 1 stays
    # our child, the record's supervisor_pid stays true), same open pipes, a third of the
    # memory. Its command line still names the container, as `system doctor` looks for.
    log_fd = log.file.fileno()
    for fd in (*sources, log_fd):
        os.set_inheritable(fd, True)
    argv = [cid, "--watch", str(log_fd), str(out_r), str(err_r), str(proc.child_pid)]
    os.execv(sys.executable, [sys.executable, "-m", __spec__.name, *argv])


def watch(cid: str, log_fd: int, out_r: int, err_r: int, pid1: int) -> int:
    """Log the command's output until it closes it, wait for it, record its exit."""
    log = LogWriter(log_fd)
    sources = {out_r: "stdout", err_r: "stderr"}
    sel = selectors.DefaultSelector()
    for fd in sources:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    while sources:
        for key, _ in sel.select():
            fd = key.fd
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if data:
                log.feed(sources[fd], data)
            else:
                sel.unregister(fd)
                os.close(fd)
                del sources[fd]
    log.close()
    code = os.waitstatus_to_exitcode(os.waitpid(pid1, 0)[1])
    from containerlab.runtime import state

    _record_exit(state.load(cid), 128 - code if code < 0 else code)  # -N: killed by signal N
    return 0


def _supervise_terminal(rec: state.Record, report_fd: int, attach_first: bool) -> int:
    """A ``-t`` container: its own terminal, made inside it and sent back over a socket
    (see ``init.console``), so ``tty`` inside names it, as in ``docker run -dt``. This
    process holds the master, logs what it prints (one stream: a terminal has no stderr)
    and lets clients attach to it (``runtime.attach``): ``attach.sock`` in the record's
    directory, there while the container runs.

    ``attach_first`` (``run -it``, ``start -a``): say "listening" once the socket exists,
    and launch the command only once the CLI has connected, so it sees every byte."""
    from containerlab.runtime import attach, container
    from containerlab.runtime.tty import console_socket, receive_console

    try:
        server = attach.Server(rec.dir)
    except OSError as e:
        _report(report_fd, {"event": "error", "code": 125, "message": f"attach socket: {e}"})
        return 125
    try:
        if attach_first:
            said = _say(report_fd, {"event": "listening"})
            timeout = attach.FIRST_CLIENT_TIMEOUT
            if not said or server.wait_first_client(timeout, report_fd) == "gone":
                # Its CLI died before it could attach: never started (as after `create`).
                os.close(report_fd)
                if rec.config.get("auto_remove"):
                    container.remove_record(rec.id)
                return 0
        log = LogWriter(str(rec.dir / LOG_NAME))
        console, theirs = console_socket()
        devnull = os.open(os.devnull, os.O_RDWR)
        stdio = {"stdin": theirs.detach(), "stdout": devnull, "stderr": devnull}
        # The container's init holds the console socket until it has used it.
        proc = _launch(rec, report_fd, stdio, console=True)
        if isinstance(proc, int):
            return proc
        try:
            master = receive_console(console)
        except ContainerlabError as e:
            proc.close()
            container.finish(rec.id, proc.wait())
            _report(report_fd, {"event": "error", "code": 125, "message": str(e)})
            return 125
        finally:
            console.close()
        _report(report_fd, {"event": "started", "pid": proc.child_pid})
        pidfd = os.pidfd_open(proc.child_pid)  # readable once the command exits
        try:
            server.serve(master, lambda data: log.feed("stdout", data), until=pidfd)
        finally:
            os.close(pidfd)
        server.stop_listening()
        os.close(master)
        log.close()
        code = proc.wait()
        _record_exit(rec, code)
        # Last: whoever is attached gets the exit code once it is recorded (and, with
        # --rm, once the container is gone), so `run -it --rm` returns with nothing left.
        server.goodbye(code)
        return 0
    finally:
        server.close()


def _record_exit(rec: state.Record, code: int) -> None:
    from containerlab.runtime import container, state

    try:
        container.finish(rec.id, code)
    except state.NoSuchContainerError:
        return  # `rm -f` removed it meanwhile: nothing left to record
    if rec.config.get("auto_remove"):
        container.remove_record(rec.id)


def _say(fd: int, message: dict) -> bool:
    """A line to the CLI, the pipe kept open; False if the CLI is gone."""
    try:
        os.write(fd, json.dumps(message).encode() + b"\n")
    except BrokenPipeError:
        return False
    return True


def _report(fd: int, message: dict) -> None:
    """Tell the CLI how the start went, our last word to it. A CLI killed meanwhile (its end
    of the pipe is gone) must not take the container down with it: the container runs on,
    as after ``run -d``."""
    try:
        os.write(fd, json.dumps(message).encode() + b"\n")
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)
        _release_stderr()


def _release_stderr() -> None:
    """Send our stderr to supervisor.log (our stdout) from now on. Explaining, it was the
    CLI's (see ``start_detached``), to show the start's steps there; but we outlive the CLI,
    and must neither write on its terminal later nor keep a pipe it reads to the end open."""
    sys.stderr.flush()
    os.dup2(1, 2)


def start_detached(cid: str, before_start: Callable[[], None] | None = None) -> int:
    """Start a created/exited container under a supervisor; returns its PID 1 (host pid).

    Waits only until the command has been exec'd (or failed to be: then the error is raised
    here, with its exit code: 127, 126 or 125). ``before_start`` (a ``-t`` container only):
    called once the supervisor listens on its attach socket and before it launches the
    command; it connects there (``attach.start``), so nothing the command prints is missed.
    """
    import subprocess

    from containerlab import syscalls
    from containerlab.runtime import state

    rec = state.load(cid)
    r, w = os.pipe()
    argv = [sys.executable, "-m", "containerlab.runtime.supervisor", cid, str(w)]
    if before_start is not None:
        argv.append("--attach-first")
    explain = syscalls.explaining()
    try:
        with open(rec.dir / "supervisor.log", "ab") as errlog:
            subprocess.Popen(
                argv,
                pass_fds=(w,),
                # It explains as we do (set_explain may have turned it on here, not in the
                # environment it inherits)...
                env={**os.environ, "CONTAINERLAB_EXPLAIN": "1"} if explain else None,
                stdin=subprocess.DEVNULL,
                stdout=errlog,
                # ... into our stderr (None: inherited) until the command has started, so its
                # steps and its launcher's show here; then into supervisor.log (see _report).
                stderr=None if explain else errlog,
                start_new_session=True,  # its own session: the CLI's Ctrl-C does not reach it
            )
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
        if before_start is not None and line and json.loads(line)["event"] == "listening":
            before_start()  # if it fails, our end closes: the supervisor gives up
            line = f.readline()
    if not line:
        raise ContainerlabError(
            f"the supervisor of {cid[:12]} died before starting it; see "
            f"{rec.dir / 'supervisor.log'}"
        )
    msg = json.loads(line)
    if msg["event"] == "error":
        err = ContainerlabError(msg["message"])
        err.exit_code = msg["code"]
        raise err
    return int(msg["pid"])


def main() -> None:
    if sys.argv[2:3] == ["--watch"]:  # the second life of a supervisor (see supervise)
        log_fd, out_r, err_r, pid1 = (int(a) for a in sys.argv[3:7])
        sys.exit(watch(sys.argv[1], log_fd, out_r, err_r, pid1))
    cid, fd = sys.argv[1], int(sys.argv[2])
    attach_first = sys.argv[3:] == ["--attach-first"]
    # The CLI's terminal is gone or not ours: never die of its hang-up or its Ctrl-C.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # PID 1 becomes our child once the launcher that forked it exits (launch(adopt=True)):
    # no launcher stays to wait for it, as containerd-shim is a subreaper for runc's.
    from containerlab import syscalls

    syscalls.set_child_subreaper()
    sys.exit(supervise(cid, fd, attach_first))


if __name__ == "__main__":
    main()

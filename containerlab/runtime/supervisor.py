"""The supervisor of a detached container: the role conmon (podman) or containerd-shim
(docker) plays.

``run -d`` must return at once, yet somebody has to stay: to hold the container's stdio
(if nobody reads its stdout, the command blocks once the pipe is full), write it to the
log, wait for the command, record its exit code and time, and remove it if ``--rm`` was
asked. That is this process: ``python -m containerlab.runtime.supervisor ID FD``, started in
a session of its own so it outlives the CLI that started it. It tells the CLI over ``FD``
whether the command started (or why not), then closes it.

Logs are JSON lines, as Docker's json-file driver writes them:
``{"log": "hello\\n", "stream": "stdout", "time": "2026-11-28T12:00:00.123456789Z"}``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys

from containerlab.errors import ContainerlabError
from containerlab.runtime import container, state

LOG_NAME = "container.log"


class LogWriter:
    """Turns the command's output into log lines, split at newlines, one stream each."""

    def __init__(self, path: str):
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
        entry = {"log": data.decode(errors="replace"), "stream": stream, "time": state.now()}
        self.file.write(json.dumps(entry).encode() + b"\n")

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._write(stream, rest)
        self.file.close()


def supervise(cid: str, report_fd: int) -> int:
    rec = state.load(cid)
    tty = bool(rec.config.get("tty"))
    log = LogWriter(str(rec.dir / LOG_NAME))
    sources: dict[int, str] = {}
    devnull = os.open(os.devnull, os.O_RDWR)
    console = None
    if tty:
        # The container's own terminal, made inside it and sent back over a socket (see
        # init.console): `tty` inside names it, as in `docker run -dt`.
        from containerlab.runtime.tty import console_socket

        console, theirs = console_socket()
        stdio = {"stdin": theirs.detach(), "stdout": devnull, "stderr": devnull}
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdio = {"stdin": devnull, "stdout": out_w, "stderr": err_w}
        sources = {out_r: "stdout", err_r: "stderr"}
    try:
        proc = container.launch(rec, console=console is not None, **stdio)
    except (ContainerlabError, OSError) as e:
        code = getattr(e, "exit_code", 125)
        _report(report_fd, {"event": "error", "code": code, "message": str(e)})
        return code
    finally:
        for fd in set(stdio.values()):
            os.close(fd)  # only the container holds the writing ends now
    if console is not None:
        from containerlab.runtime.tty import receive_console

        try:
            sources[receive_console(console)] = "stdout"  # a terminal: one output stream
        except ContainerlabError as e:
            proc.close()
            container.finish(cid, proc.wait())
            _report(report_fd, {"event": "error", "code": 125, "message": str(e)})
            return 125
        finally:
            console.close()
    _report(report_fd, {"event": "started", "pid": proc.child_pid})

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
            except OSError:  # EIO: the terminal's other side is closed
                data = b""
            if data:
                log.feed(sources[fd], data)
            else:
                sel.unregister(fd)
                os.close(fd)
                del sources[fd]
    log.close()
    code = proc.wait()
    try:
        container.finish(cid, code)
    except state.NoSuchContainerError:
        return 0  # `rm -f` removed it meanwhile: nothing left to record
    if rec.config.get("auto_remove"):
        container.remove_record(cid)
    return 0


def _report(fd: int, message: dict) -> None:
    """Tell the CLI how the start went. A CLI killed meanwhile (its end of the pipe is gone)
    must not take the container down with it: the container runs on, as after ``run -d``."""
    try:
        os.write(fd, json.dumps(message).encode() + b"\n")
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def start_detached(cid: str) -> int:
    """Start a created/exited container under a supervisor; returns its PID 1 (host pid).

    Waits only until the command has been exec'd (or failed to be: then the error is raised
    here, with its exit code: 127, 126 or 125).
    """
    rec = state.load(cid)
    r, w = os.pipe()
    try:
        with open(rec.dir / "supervisor.log", "ab") as errlog:
            subprocess.Popen(
                [sys.executable, "-m", "containerlab.runtime.supervisor", cid, str(w)],
                pass_fds=(w,),
                stdin=subprocess.DEVNULL,
                stdout=errlog,
                stderr=errlog,
                start_new_session=True,  # its own session: the CLI's Ctrl-C does not reach it
            )
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
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
    cid, fd = sys.argv[1], int(sys.argv[2])
    # The CLI's terminal is gone or not ours: never die of its hang-up or its Ctrl-C.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(supervise(cid, fd))


if __name__ == "__main__":
    main()

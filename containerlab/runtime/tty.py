"""``run -it`` and ``exec -it``: a container attached to your terminal through a pseudo-terminal.

A pseudo-terminal is a pair: the *slave* side looks like a real terminal to the program
(the container's shell gets it as stdin, stdout, stderr and controlling terminal), the
*master* side is what a terminal emulator holds. The pair is made *inside* the container,
from its own ``/dev/ptmx`` (see ``runtime.init.console``), so the shell's terminal has a
name there (``tty`` prints ``/dev/pts/0``), and its master is sent back to us over a Unix
socket, as runc's ``--console-socket`` does.

This process holds the master: it puts your own terminal in raw mode (so every key,
Ctrl-C included, goes to the container as a byte instead of being acted on here), copies
bytes both ways, and passes on window size changes (SIGWINCH here becomes TIOCSWINSZ
there, and the kernel sends the container's foreground job a SIGWINCH of its own). The
container's terminal line discipline then does what yours would: Ctrl-C becomes SIGINT for
the shell's foreground job, Ctrl-D an end of file. Your terminal's mode is restored on the
way out, however the session ends.

``exec -it`` holds the master in the CLI, as here. A container's own terminal (``run
-it``, ``run -dt``) is held by its supervisor instead, which outlives the CLI: the CLI
attaches to it over a socket (``runtime.attach``), and that is what lets Docker's detach
keys (Ctrl-P Ctrl-Q) leave the container running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty as _tty
from collections.abc import Callable, Iterator

from containerlab.errors import ContainerlabError

#: How long the command may take to send its terminal back once it has been exec'd (it is
#: sent before exec, so it is already waiting on the socket; this is only a safety net).
CONSOLE_TIMEOUT = 10.0


def copy_window_size(src_fd: int, dst_fd: int) -> None:
    """TIOCGWINSZ on one terminal, TIOCSWINSZ on the other (the kernel then sends SIGWINCH)."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


def console_socket() -> tuple[socket.socket, socket.socket]:
    """A connected pair: keep the first, pass the second as the command's stdin with
    ``console=True``; then :func:`receive_console` on the first."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def receive_console(sock: socket.socket, timeout: float = CONSOLE_TIMEOUT) -> int:
    """The master side of the terminal the container made (SCM_RIGHTS over ``sock``)."""
    sock.settimeout(timeout)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 64, 1)
    except TimeoutError:
        fds = []
    if not fds:
        raise ContainerlabError(
            "the container did not send its terminal back; run without -t to see its errors"
        )
    os.set_inheritable(fds[0], False)
    return fds[0]


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Our terminal in raw mode for the duration, its mode restored however we leave.

    Nothing happens when ``fd`` is not a terminal (output piped to a file, a test).
    """
    saved = None
    with contextlib.suppress(termios.error):
        saved = termios.tcgetattr(fd)
        _tty.setraw(fd)
    try:
        yield
    finally:
        if saved is not None:
            # TCSADRAIN: what we printed last is written out in raw mode, then the mode
            # changes back; SIGTTOU is ignored in case we are in a background job by now.
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            finally:
                signal.signal(signal.SIGTTOU, previous)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue


def _drain(master: int, stdout_fd: int) -> None:
    """What the command wrote before it exited, without blocking on background jobs."""
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        _write_all(stdout_fd, data)


def read_input(fd: int) -> bytes:
    """What our stdin has now; b"" once it ended (or failed: a closed terminal says EIO)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def relay(
    master: int,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    interactive: bool = True,
    until: int | None = None,
) -> None:
    """Copy bytes between our terminal and the container's until the container side closes.

    ``until``: an fd that becomes readable when the session is over (a pidfd of the
    process we wait for); what is left in the terminal is then shown and we return, even if
    a background job in the container still holds the terminal open.
    """
    fds = [master] + ([stdin_fd] if interactive else []) + ([until] if until is not None else [])
    while True:
        try:
            ready, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the slave side has exited
                return
            if not data:
                return
            _write_all(stdout_fd, data)
        elif until is not None and until in ready:  # over, and no output is pending
            _drain(master, stdout_fd)
            return
        if stdin_fd in ready:
            data = read_input(stdin_fd)
            if not data:  # our stdin ended: stop reading it, keep showing output
                fds.remove(stdin_fd)
                continue
            _write_all(master, data)


def attach(
    master: int,
    pid: int,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    interactive: bool = True,
) -> None:
    """Relay between our terminal (in raw mode) and ``master`` until process ``pid`` (our
    child, the launcher) exits; window size changes are passed on all along."""
    copy_window_size(stdin_fd, master)
    previous: Callable | int | None = signal.signal(
        signal.SIGWINCH, lambda *_: copy_window_size(stdin_fd, master)
    )
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    try:
        with raw_terminal(stdin_fd):
            relay(
                master,
                stdin_fd=stdin_fd,
                stdout_fd=stdout_fd,
                interactive=interactive,
                until=pidfd,
            )
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if pidfd is not None:
            os.close(pidfd)

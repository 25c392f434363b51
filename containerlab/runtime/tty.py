"""``run -it``: a container attached to your terminal through a pseudo-terminal.

A pseudo-terminal is a pair: the *slave* side looks like a real terminal to the program
(the container's shell gets it as stdin, stdout, stderr and controlling terminal), the
*master* side is what a terminal emulator holds. Here this process holds the master: it
puts your own terminal in raw mode (so every key, Ctrl-C included, goes to the container
as a byte instead of being acted on here), copies bytes both ways, and passes on window
size changes. The container's terminal line discipline then does what yours would: Ctrl-C
becomes SIGINT for the shell's foreground job, Ctrl-D an end of file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import termios
import tty as _tty

from containerlab.runtime import container
from containerlab.runtime.spec import ContainerSpec


def copy_window_size(src_fd: int, dst_fd: int) -> None:
    """TIOCGWINSZ on one terminal, TIOCSWINSZ on the other (the kernel then sends SIGWINCH)."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


def relay(master: int, *, stdin_fd: int = 0, stdout_fd: int = 1, interactive: bool = True) -> None:
    """Copy bytes between our terminal and the container's until the container side closes."""
    fds = [master] + ([stdin_fd] if interactive else [])
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
            os.write(stdout_fd, data)
        if stdin_fd in ready:
            data = os.read(stdin_fd, 65536)
            if not data:  # our stdin ended: stop reading it, keep showing output
                fds.remove(stdin_fd)
                continue
            os.write(master, data)


def run_attached(spec: ContainerSpec, *, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Run a container in the foreground on a new pseudo-terminal; returns its exit code."""
    master, slave = os.openpty()
    copy_window_size(stdin_fd, slave)
    try:
        c = container.start(spec, stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)  # the container holds it now; its exit then shows as EIO on master
    saved = None
    with contextlib.suppress(termios.error):
        saved = termios.tcgetattr(stdin_fd)
        _tty.setraw(stdin_fd)
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(stdin_fd, master))
    try:
        relay(master, stdin_fd=stdin_fd, stdout_fd=stdout_fd, interactive=spec.interactive)
        return c.wait()
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        os.close(master)
        c.process.close()
        c.wait()
        if spec.auto_remove:
            container.remove_record(c.id)

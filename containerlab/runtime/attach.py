"""``containerlab attach`` and the detach keys: leave a terminal container and come back.

To detach from ``run -it`` and leave the shell running, somebody other than the CLI must
hold the container's terminal: the master side of its pseudo-terminal (``runtime.tty``).
In Docker that is ``containerd-shim``; here it is the container's supervisor
(``runtime.supervisor``), which already logs its output. It also listens on a Unix socket
in the container's record directory, ``attach.sock`` (mode 0600: root only, and it checks
the peer's uid with ``SO_PEERCRED`` too). Every client that connects sees the output from
then on; what any of them types goes to the terminal; the last window size sent wins.

``run -it`` is then three steps, as in Docker (create, attach, start): create the record,
start the supervisor and connect to its socket *before* it launches the command (so not a
byte of output is missed), then relay between our terminal and the socket. Ctrl-P Ctrl-Q
(``--detach-keys``) closes our connection and nothing else: the container runs on, ``ps``
shows it Up, and ``containerlab attach`` gets back in.

The protocol on the socket: frames, each an 8-byte header then a payload. The header is
the one Docker's ``stdcopy`` puts on a non-terminal attach stream: one byte saying what
the payload is, three zero bytes, the payload's length as a big-endian 32-bit number.

=====  ==============  =========================================================
 type   direction        payload
=====  ==============  =========================================================
  0     client -> sup   keystrokes for the terminal (raw bytes)
  1     sup -> client   what the terminal printed (raw bytes)
  4     client -> sup   a window size: rows, cols, xpixel, ypixel (4 x u16, big-endian);
                        the supervisor sets it with TIOCSWINSZ on the master, and the
                        kernel sends SIGWINCH to the container's foreground job
  5     sup -> client   the container exited: its exit code (i32, big-endian); the last
                        frame, sent once the exit is recorded (and, with --rm, once the
                        container is removed), then the supervisor closes the connection
=====  ==============  =========================================================

Detach keys are recognised here, in the client, on what you type: the keys are held back
while they could still be the start of the sequence, and passed on if the next key does
not continue it (as Docker's ``escapeProxy`` does).

A container without ``-t`` has no terminal and no socket: ``attach`` then follows its log
from the end (as ``logs -f --tail 0`` would) until it exits, with its exit code; stdin is
not passed on (its supervisor gave it /dev/null); Ctrl-C ends the attach (exit 130) and the
container runs on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import selectors
import signal
import socket
import struct
import sys
import termios
from collections.abc import Callable, Iterator

from containerlab.errors import ContainerError
from containerlab.runtime import state

SOCKET_NAME = "attach.sock"
#: Docker's stdcopy frame header: type, three zero bytes, length (big-endian).
HEADER = struct.Struct("!B3xI")
STDIN, STDOUT, RESIZE, EXIT = 0, 1, 4, 5
WINSIZE = struct.Struct("!HHHH")
EXIT_CODE = struct.Struct("!i")
#: A frame larger than this is a broken client (ours send at most 64 kB).
MAX_FRAME = 1 << 20
#: Output queued for a client that stopped reading; beyond it the client is dropped (the
#: container must never wait for a slow reader: its output is logged and goes on).
MAX_BACKLOG = 4 << 20
#: Keystrokes the terminal has not taken yet (a program that does not read its input).
MAX_PENDING_INPUT = 1 << 20
#: How long the supervisor of ``run -it`` waits for its CLI to connect before it launches
#: the command anyway (as a detached container).
FIRST_CLIENT_TIMEOUT = 10.0
#: How long the supervisor tries to hand each client its last output and the exit code.
GOODBYE_TIMEOUT = 2.0

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
# Docker's names for the control characters, in code order: ctrl-@ is 0, ctrl-a is 1, ...
_CTRL = ["ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "ctrl-[", "ctrl-\\"]
_CTRL += ["ctrl-]", "ctrl-^", "ctrl-_"]


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class Frames:
    """Cuts a byte stream into frames; a frame may arrive in pieces."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self.buf += data
        while len(self.buf) >= HEADER.size:
            kind, size = HEADER.unpack_from(self.buf)
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes")
            if len(self.buf) < HEADER.size + size:
                return
            payload = bytes(self.buf[HEADER.size : HEADER.size + size])
            del self.buf[: HEADER.size + size]
            yield kind, payload


# --- detach keys ------------------------------------------------------------------------------
def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's syntax: comma-separated keys, each one character or ``ctrl-X`` (X one of
    a-z @ [ \\ ] ^ _). ``"ctrl-p,ctrl-q"`` (the default, for None) is ``b"\\x10\\x11"``."""
    if spec is None:
        spec = DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif key.lower() in _CTRL:
            codes.append(_CTRL.index(key.lower()))
        else:
            raise ContainerError(
                f"invalid detach keys '{spec}': give comma-separated keys, each a single "
                "character or ctrl-<a-z, @, [, \\, ], ^ or _>, e.g. 'ctrl-p,ctrl-q'"
            )
    return bytes(codes)


class DetachKeys:
    """Watches typed bytes for the detach sequence; passes everything else on."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = bytearray()  # a prefix of the sequence seen so far

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence is complete: then the rest is dropped)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b != self.keys[len(self.held)]:
                out += self.held  # not the sequence after all: what was held goes on
                self.held.clear()
                if b != self.keys[0]:
                    out.append(b)
                    continue
            self.held.append(b)
            if len(self.held) == len(self.keys):
                self.held.clear()
                return bytes(out), True
        return bytes(out), False


# --- the socket -----------------------------------------------------------------------------
@contextlib.contextmanager
def _socket_path(directory: os.PathLike | str) -> Iterator[str]:
    """A short path to ``attach.sock`` in ``directory``: a Unix socket's path may be at
    most 107 bytes, and ``<state root>/containers/<64 hex>/attach.sock`` can be longer. So
    the directory is opened (O_PATH) and named through ``/proc/self/fd/N``, a magic link
    the kernel follows to the directory itself."""
    dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dfd}/{SOCKET_NAME}"
    finally:
        os.close(dfd)


def listen(directory: os.PathLike | str) -> socket.socket:
    """The supervisor's listening socket, ``attach.sock`` (mode 0600), a stale one replaced."""
    with _socket_path(directory) as path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born 0600: no instant in which others may connect
        try:
            sock.bind(path)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
    sock.listen(16)
    return sock


def unlink_socket(directory: os.PathLike | str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), _socket_path(directory) as p:
        os.unlink(p)


def _not_attachable(rec: state.Record, why: str) -> ContainerError:
    err = ContainerError(f"cannot attach to container {rec.name} ({rec.short_id}): {why}")
    err.exit_code = 1  # as `docker attach` exits for these
    return err


def connect(rec: state.Record) -> socket.socket:
    """A connection to the supervisor of a (running, or starting) ``-t`` container."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _socket_path(rec.dir) as path:
            sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise _not_attachable(rec, "its supervisor does not listen (it has exited)") from None
    except BaseException:
        sock.close()
        raise
    return sock


# --- the supervisor's side --------------------------------------------------------------------
class _Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.frames = Frames()
        self.out = bytearray()


class Server:
    """The supervisor's half: a terminal's master, any number of attached clients."""

    def __init__(self, directory: os.PathLike | str):
        self.directory = directory
        self.listener: socket.socket | None = listen(directory)
        self.listener.setblocking(False)
        self.clients: dict[int, _Client] = {}
        self.sel = selectors.DefaultSelector()

    def wait_first_client(self, timeout: float, watch_fd: int) -> str:
        """Wait until one client connects (``run -it``'s CLI): "attached"; or until
        ``watch_fd``, the write end of a pipe to that CLI, says its reader is gone: "gone";
        or ``timeout``: "timeout"."""
        assert self.listener is not None
        p = select.poll()
        p.register(self.listener, select.POLLIN)
        p.register(watch_fd, 0)  # no event asked: only POLLERR, the reading end is closed
        ready = dict(p.poll(int(timeout * 1000)))
        if self.listener.fileno() in ready:
            self._accept()
            if self.clients:
                return "attached"
        return "gone" if watch_fd in ready else "timeout"

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            _pid, uid, _gid = struct.unpack(
                "iII", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            )
            if uid != os.geteuid():  # the socket's mode already says so; one check more
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn)
            self.clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, client)

    def _drop(self, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def _send(self, client: _Client, data: bytes) -> None:
        if len(client.out) + len(data) > MAX_BACKLOG:
            print("attach: a client stopped reading; disconnected", file=sys.stderr)
            self._drop(client)
            return
        client.out += data
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            n = client.sock.send(client.out)
            del client.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.sel.modify(client.sock, events, client)

    def serve(self, master: int, on_output: Callable[[bytes], None], until: int | None) -> None:
        """Relay until the terminal closes (every process holding it has exited), or
        ``until`` (a pidfd: PID 1's when the supervisor adopted it, else the launcher's) is
        readable: then what is left is read, and we return.
        """
        os.set_blocking(master, False)
        assert self.listener is not None
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(master, selectors.EVENT_READ, "master")
        if until is not None:
            self.sel.register(until, selectors.EVENT_READ, "until")
        to_master = bytearray()

        def output(data: bytes) -> None:
            on_output(data)
            for client in list(self.clients.values()):
                self._send(client, frame(STDOUT, data))

        def type_in(data: bytes) -> None:
            if len(to_master) + len(data) <= MAX_PENDING_INPUT:
                to_master.extend(data)
            self.sel.modify(master, selectors.EVENT_READ | selectors.EVENT_WRITE, "master")

        while True:
            for key, mask in self.sel.select():
                what = key.data
                if what == "listen":
                    self._accept()
                elif what == "until":
                    while (data := _read(master)) not in (None, b""):
                        output(data)
                    return
                elif what == "master":
                    if mask & selectors.EVENT_READ:
                        data = _read(master)
                        if data == b"":  # EIO: the container's side of the terminal is closed
                            return
                        if data:
                            output(data)
                    if mask & selectors.EVENT_WRITE:
                        try:
                            del to_master[: os.write(master, to_master)]
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            to_master.clear()
                        if not to_master:
                            self.sel.modify(master, selectors.EVENT_READ, "master")
                else:
                    client = what
                    if client.sock.fileno() < 0:
                        continue  # dropped earlier in this round
                    if mask & selectors.EVENT_WRITE:
                        self._flush(client)
                    if mask & selectors.EVENT_READ and client.sock.fileno() >= 0:
                        self._receive(client, master, type_in)

    def _receive(self, client: _Client, master: int, type_in: Callable[[bytes], None]) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # detached (or gone)
            self._drop(client)
            return
        try:
            for kind, payload in client.frames.feed(data):
                if kind == STDIN:
                    type_in(payload)
                elif kind == RESIZE and len(payload) == WINSIZE.size:
                    rows, cols, x, y = WINSIZE.unpack(payload)
                    with contextlib.suppress(OSError):
                        fcntl.ioctl(
                            master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, x, y)
                        )
        except ValueError:
            self._drop(client)

    def stop_listening(self) -> None:
        """No new client from now on: the socket goes (the container is ending)."""
        if self.listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            unlink_socket(self.directory)

    def goodbye(self, exit_code: int) -> None:
        """Each client gets what is left of the output, then the exit code; all are closed."""
        for client in list(self.clients.values()):
            client.out += frame(EXIT, EXIT_CODE.pack(exit_code))
            with contextlib.suppress(OSError):
                client.sock.settimeout(GOODBYE_TIMEOUT)
                client.sock.sendall(client.out)
            self._drop(client)

    def close(self) -> None:
        self.stop_listening()
        for client in list(self.clients.values()):
            self._drop(client)
        self.sel.close()


def _read(fd: int) -> bytes | None:
    """A read of a non-blocking terminal master: None when nothing is there now, b"" when
    the other side is closed (EIO)."""
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


# --- the client's side ------------------------------------------------------------------------
def _window_size(*fds: int) -> bytes | None:
    for fd in fds:
        with contextlib.suppress(OSError):
            raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            rows, cols, x, y = struct.unpack("HHHH", raw)
            if rows and cols:
                return WINSIZE.pack(rows, cols, x, y)
    return None


def session(
    conn: socket.socket,
    cid: str,
    *,
    interactive: bool = True,
    detach_keys: bytes = b"\x10\x11",
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> int | None:
    """Relay between our terminal and an attach socket: the container's exit code when it
    exits, None when we detached (the detach keys). ``interactive``: pass our keystrokes on
    (our terminal is then in raw mode); without it only output is shown, and Ctrl-C
    interrupts this process (the container runs on), as ``docker attach`` without stdin.
    """
    from containerlab.runtime.tty import raw_terminal

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_winch(*_: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(wake_w, b"w")

    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no resizes passed on
        previous = signal.signal(signal.SIGWINCH, on_winch)
    try:
        size = _window_size(stdin_fd, stdout_fd)
        if size is not None:
            conn.sendall(frame(RESIZE, size))
        with raw_terminal(stdin_fd) if interactive else contextlib.nullcontext():
            return _relay(
                conn, cid, interactive, DetachKeys(detach_keys), stdin_fd, stdout_fd, wake_r
            )
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)
        conn.close()


def _relay(
    conn: socket.socket,
    cid: str,
    interactive: bool,
    keys: DetachKeys,
    stdin_fd: int,
    stdout_fd: int,
    wake_r: int,
) -> int | None:
    from containerlab.runtime.tty import _write_all, read_input

    frames = Frames()
    watched = [conn.fileno(), wake_r] + ([stdin_fd] if interactive else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 64)
            size = _window_size(stdin_fd, stdout_fd)
            if size is not None:
                _send_or_lost(conn, frame(RESIZE, size))
        if conn.fileno() in ready:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:  # the supervisor went away without a word: ask the record
                return _recorded_exit(cid)
            for kind, payload in frames.feed(data):
                if kind == STDOUT:
                    _write_all(stdout_fd, payload)
                elif kind == EXIT:
                    return EXIT_CODE.unpack(payload)[0]
        if stdin_fd in ready:
            data = read_input(stdin_fd)
            if not data:  # our stdin ended: stop reading it, keep showing output
                watched.remove(stdin_fd)
                continue
            data, detach = keys.feed(data)
            if data:
                _send_or_lost(conn, frame(STDIN, data))
            if detach:
                return None


def _send_or_lost(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError as e:
        if e.errno not in (errno.EPIPE, errno.ECONNRESET):
            raise
        # The supervisor is gone; the read side finds out and asks the record.


def _recorded_exit(cid: str) -> int:
    from containerlab.runtime import lifecycle

    try:
        return lifecycle.wait(cid, timeout=10)
    except state.NoSuchContainerError:
        raise ContainerError(
            f"container {cid[:12]} is gone, and its supervisor left without its exit code"
        ) from None


# --- the verbs --------------------------------------------------------------------------------
def start(cid: str, *, size_from: tuple[int, ...] = (0, 1)) -> socket.socket:
    """Start a ``-t`` container under its supervisor, attached from its first byte (``run
    -it``, ``start -a``): the supervisor listens, we connect, then it launches the command.
    ``size_from``: the terminals whose window size the container starts with. Errors
    (125, 126, 127) are raised as ``start_detached`` raises them."""
    from containerlab.runtime import supervisor

    conns: list[socket.socket] = []
    rec = state.load(cid)

    def attach_first() -> None:
        conns.append(connect(rec))
        # Our window size now, so the supervisor sets it as soon as the terminal exists.
        size = _window_size(*size_from)
        if size is not None:
            conns[0].sendall(frame(RESIZE, size))

    try:
        supervisor.start_detached(cid, before_start=attach_first)
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns[0]


def attach(
    name_or_id: str,
    *,
    stdin: bool = True,
    detach_keys: bytes = b"\x10\x11",
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> int | None:
    """``containerlab attach``: the exit code when the container exits, None on detach."""
    from containerlab.runtime import lifecycle

    rec = lifecycle.get(name_or_id)
    if rec.state.status == "paused":
        raise _not_attachable(rec, "it is paused; unpause it first")
    if not rec.running:
        raise _not_attachable(rec, "it is not running; start it first")
    if not rec.config.get("tty"):
        return follow(rec.id, stdout_fd=stdout_fd)
    return session(
        connect(rec),
        rec.id,
        interactive=stdin and bool(rec.config.get("interactive")),
        detach_keys=detach_keys,
        stdin_fd=stdin_fd,
        stdout_fd=stdout_fd,
    )


def follow(cid: str, *, stdout_fd: int = 1, stderr_fd: int = 2) -> int:
    """A container without a terminal: its log from now on, until it exits; its exit code."""
    from containerlab.runtime import lifecycle
    from containerlab.runtime.tty import _write_all

    try:
        for entry in lifecycle.log_entries(cid, tail=0, follow=True):
            fd = stderr_fd if entry.get("stream") == "stderr" else stdout_fd
            _write_all(fd, entry.get("log", "").encode())
        return lifecycle.wait(cid, timeout=10)
    except state.NoSuchContainerError:
        return 0  # removed as it exited (--rm): its exit code went with it

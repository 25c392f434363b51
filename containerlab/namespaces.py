"""Linux namespaces: what a process can see.

A namespace wraps one global resource (hostname, process ids, mounts, IPC objects, network
stack, user ids, cgroup root, clocks) so that the processes inside get their own copy. Every
process is in exactly one namespace of each of the eight kinds; ``/proc/PID/ns/KIND`` names
it, and two processes share a namespace when those links have the same inode number.

This module inspects namespaces, starts processes in new ones (``spawn``, as
``unshare(1)`` does) and runs commands inside the namespaces of a running process
(``enter``, as ``nsenter(1)`` does). Both go through ``containerlab.nsexec``, a fresh
single-threaded process, because a Jupyter kernel is multi-threaded and must not do this
work itself. (A caller that has one thread, such as the CLI, forks that process instead
of starting a new interpreter: the same launcher, an interpreter start cheaper.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from containerlab import syscalls
from containerlab.errors import (
    CommandNotExecutableError,
    CommandNotFoundError,
    KernelFeatureError,
    NamespaceError,
    NotRootError,
)

# Types for annotations only: importing typing costs every container start ~2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import IO, Any

# subprocess's stdio constants, the same values: subprocess itself (with its threading and
# selectors) is imported only where a Popen is made or a timeout raised, ~1.5 ms a container
# start from the CLI does without.
PIPE, STDOUT, DEVNULL = -1, -2, -3

#: The eight namespace kinds, by their name under /proc/PID/ns, with what each isolates.
KINDS: dict[str, str] = {
    "mnt": "mount points: what the filesystem tree looks like",
    "uts": "hostname and NIS domain name",
    "ipc": "System V IPC objects and POSIX message queues",
    "net": "network devices, addresses, routes, firewall rules, ports",
    "pid": "process ids: the first process inside is PID 1",
    "user": "user and group ids, and the capabilities that go with them",
    "cgroup": "which cgroup directory looks like the root",
    "time": "offsets of the monotonic and boot-time clocks",
}

#: What `docker run` creates for a container by default (user and time stay shared).
CONTAINER_KINDS = frozenset({"mnt", "uts", "ipc", "net", "pid", "cgroup"})


@dataclass(frozen=True)
class IdMap:
    """One uid_map/gid_map line: ``count`` ids from ``inside`` stand for ids from ``outside``."""

    inside: int  # first id as seen inside the user namespace
    outside: int  # the id it stands for in the parent namespace
    count: int = 1  # how many consecutive ids the line maps

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}\n"


@dataclass(frozen=True)
class NamespaceSpec:
    """What a new process gets: new namespaces, joined ones, and their initial settings."""

    new: frozenset[str] = frozenset()  # kinds to create (unshare)
    join: Mapping[str, int] = field(default_factory=dict)  # kind -> pid whose namespace to join
    hostname: str | None = None  # set in the new UTS namespace
    uid_map: tuple[IdMap, ...] = ()  # written for a new user namespace
    gid_map: tuple[IdMap, ...] = ()
    time_offsets: Mapping[str, int] = field(default_factory=dict)  # clock -> seconds, new time ns
    mount_proc: bool = False  # remount /proc in the new mount+pid namespaces, as unshare does

    def validate(self) -> None:
        unknown = (set(self.new) | set(self.join)) - set(KINDS)
        if unknown:
            raise NamespaceError(
                f"unknown namespace kind {sorted(unknown)}; the kinds are {', '.join(KINDS)}"
            )
        both = set(self.new) & set(self.join)
        if both:
            raise NamespaceError(f"namespace {sorted(both)} cannot be both new and joined")
        if (self.uid_map or self.gid_map) and "user" not in self.new:
            raise NamespaceError("uid_map/gid_map need a new user namespace: add 'user' to new")
        if self.time_offsets and "time" not in self.new:
            raise NamespaceError("time_offsets need a new time namespace: add 'time' to new")
        bad = set(self.time_offsets) - {"monotonic", "boottime"}
        if bad:
            raise NamespaceError(f"unknown clock {sorted(bad)}; use 'monotonic' or 'boottime'")
        if self.hostname and "uts" not in self.new:
            raise NamespaceError("setting a hostname needs a new uts namespace: add 'uts' to new")
        if self.mount_proc and not {"mnt", "pid"} <= set(self.new):
            raise NamespaceError("mount_proc needs new 'mnt' and 'pid' namespaces")


# --- inspecting -----------------------------------------------------------------------------
def ns_id(pid: int | str, kind: str) -> int:
    """The inode number naming the ``kind`` namespace of process ``pid`` ("self" works)."""
    if kind not in KINDS:
        raise NamespaceError(f"unknown namespace kind '{kind}'; the kinds are {', '.join(KINDS)}")
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except FileNotFoundError:
        raise NamespaceError(f"no process {pid} (or this kernel has no {kind} namespace)") from None
    except PermissionError:
        raise NamespaceError(
            f"may not look at the namespaces of process {pid}; run as root"
        ) from None


def ns_ids(pid: int | str = "self") -> dict[str, int]:
    """All namespaces of a process, kind -> inode number, like ``ls -l /proc/PID/ns``."""
    out = {}
    for kind in KINDS:
        try:
            out[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise NamespaceError(f"no process {pid}; is it still running?") from None
        except PermissionError:
            raise NamespaceError(
                f"may not look at the namespaces of process {pid}; run as root"
            ) from None
    return out


def shared(pid_a: int | str, pid_b: int | str) -> dict[str, bool]:
    """For each kind, whether two processes are in the same namespace."""
    a, b = ns_ids(pid_a), ns_ids(pid_b)
    return {kind: a[kind] == b.get(kind) for kind in a}


def processes_by_namespace(kind: str) -> dict[int, list[int]]:
    """Every process on the machine grouped by its ``kind`` namespace: inode -> pids."""
    groups: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/{kind}").st_ino
        except OSError:  # gone meanwhile, or a kernel thread we may not look at
            continue
        groups.setdefault(ino, []).append(int(entry))
    for pids in groups.values():
        pids.sort()
    return groups


def read_id_map(pid: int | str, which: str = "uid") -> list[IdMap]:
    """The uid_map or gid_map of a process (an empty list: its user namespace maps nothing yet)."""
    with open(f"/proc/{pid}/{which}_map") as f:
        return [IdMap(*map(int, line.split())) for line in f if line.strip()]


# --- starting processes in namespaces ---------------------------------------------------------
class NsProcess:
    """A command running in its namespaces, started by :func:`spawn`.

    ``pid`` is the launcher (outside any new PID namespace), ``child_pid`` the command itself
    as the host sees it (inside, it is PID 1 when a PID namespace is new). Use it as a context
    manager to make sure the process is gone afterwards.

    ``adopted`` (``spawn(adopt=True)``): the launcher has exited already (``pid`` names no
    process any more) and the command is our own child, waited for here directly.
    """

    def __init__(self, popen: subprocess.Popen, child_pid: int, adopted: bool = False):
        self.popen = popen
        self.pid = popen.pid
        self.child_pid = child_pid
        self.adopted = adopted
        self._code: int | None = None  # adopted: the command's exit code, once reaped
        self.stdout: IO[Any] | None = popen.stdout
        self.stderr: IO[Any] | None = popen.stderr

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command; its exit code (128+N when killed by signal N)."""
        if self.adopted:
            return self._wait_adopted(timeout)
        rc = self.popen.wait(timeout)
        return 128 - rc if rc < 0 else rc

    def _poll_adopted(self, flags: int = os.WNOHANG) -> int | None:
        if self._code is None:
            try:
                pid, status = os.waitpid(self.child_pid, flags)
            except ChildProcessError:  # reaped by someone else: its code is lost
                pid, status = self.child_pid, 255 << 8  # Docker's "unknown"
            if pid:
                self._code = 128 - rc if (rc := os.waitstatus_to_exitcode(status)) < 0 else rc
        return self._code

    def _wait_adopted(self, timeout: float | None) -> int:
        if timeout is None:
            while self._poll_adopted(0) is None:
                pass
            return self._code  # type: ignore[return-value]
        return _poll_until(self._poll_adopted, timeout, f"command {self.child_pid}")

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[Any, Any]:
        out = self.popen.communicate(input, timeout)
        if self.adopted:
            self.wait(timeout)
        return out

    @property
    def returncode(self) -> int | None:
        if self.adopted:
            return self._code
        rc = self.popen.returncode
        return None if rc is None else (128 - rc if rc < 0 else rc)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the command. The launcher then reaps it and exits on its own.

        The launcher is not killed first: its child would be orphaned, and an orphan whose
        new parent never calls wait() stays a zombie (PID 1 of some machines does not reap).
        """
        if self.adopted and self._code is not None:
            return  # reaped: its pid may name another process by now
        try:
            os.kill(self.child_pid, sig)
        except ProcessLookupError:
            pass

    def close(self, grace: float = 5.0) -> None:
        """Make sure the command and the launcher are gone and reaped."""
        if self.adopted:
            if self._poll_adopted() is None:
                self.kill(signal.SIGKILL)
                import subprocess

                try:
                    self._wait_adopted(grace)
                except subprocess.TimeoutExpired:
                    self._wait_adopted(None)  # SIGKILL'd: it goes, however long it takes
        elif self.popen.poll() is None:
            self.kill(signal.SIGKILL)
            import subprocess

            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()  # the launcher itself is stuck: last resort
                self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> NsProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NsProcess launcher={self.pid} command={self.child_pid} rc={self.returncode}>"


def _poll_until(poll: Callable[[], int | None], timeout: float, what: str) -> int:
    """``poll()`` until it returns an exit code, sleeping 0.5 ms, then twice as long each
    time (up to 50 ms): a quick exit is seen at once, a slow one costs little CPU. Raises
    subprocess.TimeoutExpired (as Popen.wait does) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while (code := poll()) is None:
        if time.monotonic() > deadline:
            import subprocess

            raise subprocess.TimeoutExpired([what], timeout)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return code


def _recv_messages(sock: socket.socket):
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


def _fail(kind: str, code: int, message: str) -> Exception:
    if code == 127:
        return CommandNotFoundError(message)
    if code == 126:
        return CommandNotExecutableError(message)
    if "EPERM" in message and os.geteuid() != 0:
        return NotRootError(f"{message}; namespaces need root: run as root (sudo)")
    if "EINVAL" in message and "time" in message:
        return KernelFeatureError(f"{message}; time namespaces need Linux >= 5.6")
    return NamespaceError(message)


def spawn(
    argv: Sequence[str],
    spec: NamespaceSpec | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    setup: tuple[str, Mapping[str, Any]] | None = None,
    setup_early: str | None = None,
    before_go: Any = None,
    prepare: Any = None,
    tty: bool = False,
    init: bool = False,
    after_fork: Any = None,
    cgroup: Any = None,
    adopt: bool = False,
    **spec_fields: Any,
) -> NsProcess:
    """Start ``argv`` in new and/or joined namespaces and return once it has been exec'd.

    ``spawn(["sh"], new={"uts", "pid"}, hostname="box")`` is ``unshare --uts --pid --fork``.
    ``setup`` names a function (``"module:function"``, payload) the launcher runs inside the
    namespaces right before exec: the runtime uses it to build the container's root
    filesystem. ``setup_early`` names another (same payload) that the launcher runs, when it
    makes a mount namespace and no user namespace, while ``before_go`` runs: the mounts that
    need no PID namespace, so the command's own start is shorter. ``before_go(launcher_pid)``
    runs in the caller once the namespaces exist and before the command starts: where the
    outside work (id maps, cgroups, network) happens.
    ``prepare()`` runs in the caller right after the launcher is started, while it makes the
    namespaces: what the outside work can do before they exist overlaps with the launcher's.
    Explaining, the two sides take turns instead, so that their steps print in order.
    ``tty``: stdin is a pseudo-terminal that becomes the command's controlling terminal.
    ``init``: a small init stays PID 1 (reaps zombies, forwards signals) and the command
    runs as its child, as ``docker run --init`` does. ``after_fork(launcher_pid)`` runs in
    the caller once the launcher has forked the command. ``cgroup`` (a ``cgroups.Cgroup``):
    the launcher moves itself in after ``before_go`` and before it forks, so every process
    of the command is born inside, and back out once it has forked (it only waits then, and
    must not count against the limits); a process moving itself costs no RCU grace period
    on cgroup v1, where moving another one by pid does.
    ``adopt``: the caller, which must be a child subreaper (``syscalls.set_child_subreaper``,
    as a detached container's supervisor is), becomes the command's parent: the launcher
    exits once it has forked instead of staying to wait (one process less per container),
    and ``wait()`` waits for the command directly. Without a new PID namespace the launcher
    is the command and this changes nothing.
    Raises ``CommandNotFoundError`` (127), ``CommandNotExecutableError`` (126) or
    ``NamespaceError`` when the command could not be started; nothing is left running then.
    """
    if spec is None:
        spec = NamespaceSpec(
            **{k: (frozenset(v) if k == "new" else v) for k, v in spec_fields.items()}
        )
    elif spec_fields:
        raise TypeError("pass either a NamespaceSpec or its fields, not both")
    spec.validate()
    if not argv:
        raise NamespaceError("no command given: spawn needs at least argv[0]")
    if adopt and not syscalls.is_child_subreaper():
        raise NamespaceError(
            "adopt=True needs a caller that is a child subreaper, or the command would be "
            "orphaned: call syscalls.set_child_subreaper() first"
        )
    config = {
        "argv": list(argv),
        "env": dict(env) if env is not None else None,
        "new": sorted(spec.new),
        "join": dict(spec.join),
        "hostname": spec.hostname,
        "time_offsets": dict(spec.time_offsets),
        "mount_proc": spec.mount_proc,
        "root_uid_mapped": any(m.inside == 0 for m in spec.uid_map),
        "root_gid_mapped": any(m.inside == 0 for m in spec.gid_map),
        "caller_pid": os.getpid(),
        "tty": tty,
        "init": init,
        "adopt": adopt,
        "setup": {"entry": setup[0], "payload": dict(setup[1]), "early": setup_early}
        if setup
        else None,
        "cgroup": None
        if cgroup is None
        else {"join": cgroup.self_join_files(), "leave": cgroup.self_leave_files()},
    }
    # The launcher's fds 0-2 are the command's stdio before its first step, so it explains
    # into a copy of our stderr instead: its steps show where ours do (our terminal, the
    # CLI's for a supervisor), never in the container's output or log.
    explain_fd = _stderr_copy() if syscalls.explaining() else None
    config["explain_fd"] = explain_fd
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        popen = _start_launcher(theirs.fileno(), stdin, stdout, stderr, explain_fd)
    finally:
        theirs.close()
        if explain_fd is not None:
            os.close(explain_fd)  # the launcher has its own copy now
    child_pid = 0
    error: dict | None = None
    try:
        with ours:
            ours.sendall(json.dumps(config).encode() + b"\n")
            # Explained, in turn (after "unshared"): steps explained by two processes at once
            # would print interleaved, in an order that changes from run to run.
            if prepare is not None and explain_fd is None:
                prepare()
            for msg in _recv_messages(ours):
                if msg["event"] == "unshared":
                    launcher = msg["pid"]
                    if prepare is not None and explain_fd is not None:
                        prepare()
                    if "user" in spec.new:
                        write_id_maps(launcher, spec.uid_map, spec.gid_map)
                    if before_go is not None:
                        before_go(launcher)
                    # A launcher that failed meanwhile has sent why and gone: read on.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        ours.sendall(b'{"event": "go"}\n')
                elif msg["event"] == "forked":
                    child_pid = msg["pid"]
                    if after_fork is not None and child_pid != popen.pid:
                        after_fork(popen.pid)
                elif msg["event"] == "error":
                    error = msg
    except BaseException:
        # Interrupted half-way: stop the command first so the launcher can reap it.
        if child_pid:
            _adopt(popen, child_pid, adopt).close()
        else:
            popen.kill()
            popen.wait()
        raise
    if error is not None or not child_pid:
        if child_pid:
            _adopt(popen, child_pid, adopt).wait()  # a failed setup's exit, reaped
        popen.wait()
        if error is None:
            error = {"code": 125, "message": "the launcher exited before starting the command"}
        raise _fail("", error["code"], error["message"])
    return _adopt(popen, child_pid, adopt)


def _adopt(popen: Any, child_pid: int, adopt: bool) -> NsProcess:
    """The NsProcess of a launcher that has forked ``child_pid``. Adopted: the launcher
    exits on its own right after forking; once it is reaped, the command is our child."""
    if not adopt or child_pid == popen.pid:
        return NsProcess(popen, child_pid)
    popen.wait()
    return NsProcess(popen, child_pid, adopted=True)


def _stderr_copy() -> int | None:
    """A close-on-exec copy of our stderr, numbered above 2 so that moving the command's
    stdio onto 0-2 in the launcher cannot overwrite it (None: we have no stderr)."""
    try:
        return fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        return None


def _start_launcher(
    fd: int, stdin: Any, stdout: Any, stderr: Any, explain_fd: int | None = None
) -> Any:
    """Start the launcher (``nsexec.main``) on socket ``fd``: a Popen, or a forked one.

    Re-executing Python (``python -m containerlab.nsexec FD``) is what makes the launcher
    safe to start from a multi-threaded caller such as a Jupyter kernel, and costs an
    interpreter start plus its imports. A caller with a single thread (the CLI, the
    supervisor) may fork instead: the child is single-threaded, so it may do in-process what
    the fresh launcher does. ``CONTAINERLAB_LAUNCHER=exec`` always re-executes.
    ``explain_fd``: a descriptor the launcher keeps, under the same number, to explain into.
    """
    extra = () if explain_fd is None else (explain_fd,)
    if _may_fork(fd, stdin, stdout, stderr):
        return _ForkedLauncher.start(fd, stdin, stdout, stderr, extra)
    import subprocess

    return subprocess.Popen(
        _launcher_argv(fd),
        pass_fds=(fd, *extra),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


def _launcher_argv(fd: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "containerlab.nsexec", str(fd)]


def _forked_launcher_argv(fd: int) -> list[str]:
    # Named after the interpreter as this process was started (`python3`, or the venv's
    # path in the `containerlab` script's #! line): it has to fit where that name was.
    return _launcher_argv(fd, sys.orig_argv[0] if sys.orig_argv else sys.executable)


def _may_fork(fd: int, *stdio: Any) -> bool:
    if os.environ.get("CONTAINERLAB_LAUNCHER") == "exec":
        return False
    if any(s == PIPE for s in stdio):
        return False  # pipes to read back: Popen's plumbing (communicate) is needed
    if sum(len(os.fsencode(a)) + 1 for a in _forked_launcher_argv(fd)) > syscalls.cmdline_room():
        return False  # it could not be named as a launcher (see _become_launcher)
    # Every thread, C ones included: a thread holding a lock (malloc's, the import lock)
    # at fork leaves that lock held for ever in the child.
    return len(os.listdir("/proc/self/task")) == 1


class _ForkedLauncher:
    """The launcher as a child of the caller (see ``_start_launcher``), with the part of
    ``subprocess.Popen``'s interface that :class:`NsProcess` uses."""

    stdin = stdout = stderr = None  # no pipes: _may_fork sends those to Popen

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(
        cls, fd: int, stdin: Any, stdout: Any, stderr: Any, keep: tuple[int, ...] = ()
    ) -> _ForkedLauncher:
        targets = {0: _fd_of(stdin), 1: _fd_of(stdout)}
        if stderr == STDOUT:
            targets[2] = 1 if targets[1] is None else targets[1]
        else:
            targets[2] = _fd_of(stderr)
        devnull = None
        if DEVNULL in targets.values():
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):  # or the child would write them out again
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _become_launcher(
                    fd,
                    {k: devnull if v == DEVNULL else v for k, v in targets.items()},
                    keep,
                )
            finally:
                os._exit(125)
        if devnull is not None:
            os.close(devnull)
        return cls(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0  # reaped by someone else: as Popen does
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while self.returncode is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    status = 0
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        return _poll_until(self.poll, timeout, f"launcher {self.pid}")

    def communicate(self, input: bytes | None = None, timeout: float | None = None):
        if input:
            raise ValueError("the command's stdin is not a pipe: pass stdin=subprocess.PIPE")
        self.wait(timeout)
        return None, None

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _fd_of(stream: Any) -> Any:
    """A Popen stdio argument as a descriptor (None: inherit; DEVNULL kept as is)."""
    if stream is None or stream == DEVNULL:
        return stream
    if isinstance(stream, int):
        return stream
    return stream.fileno()


def _become_launcher(fd: int, stdio: dict[int, int | None], keep: tuple[int, ...] = ()) -> None:
    """In the forked child: what Popen and exec would have given the re-executed launcher
    (the given stdio, no other descriptor but ``keep``, no Python signal handler, its
    command line), then the launcher itself. Never returns (nsexec.main ends in _exit)."""
    import gc

    gc.disable()  # the caller's garbage may hold descriptors this child closes and reuses
    if fd < 3:
        fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    # Copies above 2 first, so that moving one stream into place cannot clobber another.
    copies = {
        t: fcntl.fcntl(s, fcntl.F_DUPFD_CLOEXEC, 3) for t, s in stdio.items() if s is not None
    }
    for target, copy in copies.items():
        os.dup2(copy, target)  # inheritable, as Popen leaves them
    low = 3  # close every descriptor above 2 but the socket and ``keep`` (all above 2)
    for kept in sorted({fd, *keep}):
        os.closerange(low, kept)
        low = kept + 1
    os.closerange(low, 1 << 20)
    for sig in signal.valid_signals():
        if callable(signal.getsignal(sig)):
            # A fresh interpreter's: Ctrl-C is KeyboardInterrupt, the rest their default.
            signal.signal(
                sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            )
    signal.set_wakeup_fd(-1)
    # `ps`, `system doctor` and the tests' leak check tell launchers, supervisors and CLIs
    # apart by their command lines: the launcher shows the re-executed one's.
    syscalls.set_cmdline(_forked_launcher_argv(fd))
    from containerlab import nsexec

    nsexec.main(fd)


def write_id_maps(pid: int, uid_map: Iterable[IdMap], gid_map: Iterable[IdMap]) -> None:
    """Write a new user namespace's uid and gid maps from outside, as newuidmap(1) does.

    Each file can be written once, in one write. Until it is, every id inside is the
    overflow id 65534 ("nobody").
    """
    uid_lines = "".join(m.line() for m in uid_map)
    gid_lines = "".join(m.line() for m in gid_map)
    if uid_lines:
        syscalls.write_file(f"/proc/{pid}/uid_map", uid_lines)
    if gid_lines:
        syscalls.write_file(f"/proc/{pid}/gid_map", gid_lines)


def run(
    argv: Sequence[str], spec: NamespaceSpec | None = None, *, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run ``argv`` in namespaces to completion and capture its output (text)."""
    import subprocess

    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    with spawn(argv, spec, **kwargs) as proc:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.wait()

    def dec(b):
        return b.decode(errors="replace") if isinstance(b, bytes) else b

    return subprocess.CompletedProcess(list(argv), rc, dec(out), dec(err))


def enter(
    pid: int, argv: Sequence[str], kinds: Iterable[str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the namespaces of the running process ``pid``, as ``nsenter`` does.

    ``kinds`` defaults to every namespace the process does not share with us.
    """
    if kinds is None:
        kinds = [k for k, same in shared("self", pid).items() if not same]
    return run(argv, NamespaceSpec(join={k: pid for k in kinds}), **kwargs)

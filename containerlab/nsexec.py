"""The namespace launcher: a fresh, single-threaded process that enters namespaces, then execs.

A Jupyter kernel (or any caller) is multi-threaded, and a multi-threaded process must not
fork and then do real work in the child, nor may it ``unshare(CLONE_NEWUSER)`` or ``setns``
into a mount namespace at all. So, as ``runc init`` is runc re-executed, the caller starts
this module as a new Python process (``python -m containerlab.nsexec FD``) and talks to it
over a socket:

    caller                               launcher (this module)
    ------                               ----------------------
    send config (one JSON line)   --->   setns() into joined namespaces, unshare() new ones,
                                         write time offsets
                                  <---   {"event": "unshared", "pid": P}
    write uid_map / gid_map (user ns),
    before_go: network, cgroups...
    {"event": "go"}               --->   join the config's cgroup (writing 0, "myself");
                                         fork if a PID or time namespace is new (they apply to
                                         children only); the child is PID 1 in its namespace;
                                         leave the cgroup again
                                  <---   {"event": "forked", "pid": C}   (C as the host sees it)
                                         child: setsid, hostname, /proc, setup hook, exec
                                  <---   {"event": "error", ...}  only if that failed
                                  <---   EOF: the socket is close-on-exec, so a successful
                                         exec closes it. The launcher stays to wait for the
                                         child and exits with its code (128+N on signal N).

With ``"adopt"`` in the config (a detached container's supervisor, a child subreaper) the
launcher exits as soon as it has sent "forked" instead of waiting: the child is re-parented
to the caller, which waits for it itself, as containerd-shim does for runc's children. The
child arms its parent-death signal only once that has happened (armed earlier, the
launcher's exit would kill it), and checks that its new parent is the caller.

Explain mode follows the caller's: its steps are written to a copy of the caller's stderr
passed down as ``"explain_fd"`` in the config (fds 0-2 here are the command's stdio already).

A caller with a single thread (the CLI, a supervisor) skips the interpreter start: it forks
and the child runs the same :func:`main` on its end of the socket (see
``namespaces._start_launcher``), so both ways take one code path from the config on.

Imports here are kept to the standard library and the kernel seam: this runs on every
container start.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import select
import signal
import socket
import sys

from containerlab import syscalls

# The order nsenter(1) joins namespaces in: the user namespace first, since joining it can
# grant the capabilities the other setns calls need; the mount namespace late, since it
# changes what paths mean.
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")

# Signals the launcher passes on to the command, as `docker run` does (sig-proxy).
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

# Exit codes, as Docker has them.
EXIT_SETUP_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


def send(sock: socket.socket, **message: object) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _recv_line(sock: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the caller closed the launcher's socket")
        buf += chunk
    return json.loads(buf)


def exit_code_of(status: int) -> int:
    """A wait status as a shell exit code: the code itself, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _join(join: dict[str, int]) -> None:
    # Open every namespace file first: after joining the mount namespace, /proc/PID
    # may no longer mean the same process.
    fds = []
    joined_user = False
    for kind in JOIN_ORDER:
        if kind in join:
            path = f"/proc/{join[kind]}/ns/{kind}"
            try:
                fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind, path))
            except OSError as e:
                raise syscalls.SyscallError("open", e.errno or 0, path) from None
    for fd, kind, path in fds:
        # Joining your own user namespace again is EINVAL: skip it, as nsenter does.
        if kind == "user" and os.stat(path).st_ino == os.stat("/proc/self/ns/user").st_ino:
            os.close(fd)
            continue
        try:
            syscalls.setns(fd, syscalls.NS_FLAGS[kind], path)
        finally:
            os.close(fd)
        if kind == "user":
            joined_user = True
    # As nsenter(1) does: in a joined user namespace, become its root (uid/gid 0 there).
    # Our host uid is not mapped inside, so otherwise we would be "nobody" (65534).
    if joined_user:
        _become_root_in_userns(_maps_root("uid"), _maps_root("gid"))


def _maps_root(which: str) -> bool:
    """Whether this process's user namespace maps id 0 in its ``uid_map``/``gid_map``."""
    with open(f"/proc/self/{which}_map") as f:
        for line in f:
            inside, _outside, count = map(int, line.split())
            if inside <= 0 < inside + count:
                return True
    return False


def _become_root_in_userns(uid: bool, gid: bool) -> None:
    # After unshare(CLONE_NEWUSER) we hold every capability in the new namespace but are
    # "nobody" (65534) until the caller writes the maps; then switch to the ids 0 they map.
    if gid:
        os.setgroups([])
        os.setresgid(0, 0, 0)
    if uid:
        os.setresuid(0, 0, 0)


def _explain_to_caller(config: dict) -> None:
    """Explain (or not) as the caller does, into its stderr: ``explain_fd`` in the config is a
    copy of it that the caller passed down. Our own fds 0-2 are the command's stdio, so a
    step explained there would land in its output, or in a detached container's log."""
    fd = config.get("explain_fd")
    if fd is not None:
        os.set_inheritable(fd, False)  # closed by exec: the command never gets it
    syscalls.set_explain(fd is not None)
    syscalls.set_explain_fd(fd)


def _stop_explaining(config: dict) -> None:
    """No step left to explain: let go of the caller's stderr, since this process may outlive
    the caller (an init staying PID 1, a launcher waiting for the command). A caller that
    reads its stderr to the end (a pipe) would otherwise wait for the container's exit."""
    fd = config.get("explain_fd")
    if fd is not None:
        syscalls.set_explain(False)
        syscalls.set_explain_fd(None)
        os.close(fd)


def _cgroup_files(config: dict) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The files this process joins the container's cgroup with, and leaves it with.

    Opened at once: after joining a container's mount namespace (exec) these paths would lead
    into the container's /sys, and the kernel checks a move against who opened the file.
    """
    cg = config.get("cgroup") or {}
    return (
        [(syscalls.open_for_write(p), p) for p in cg.get("join", [])],
        [(syscalls.open_for_write(p), p) for p in cg.get("leave", [])],
    )


def _move_self(files: list[tuple[int, str]]) -> None:
    for fd, path in files:
        syscalls.write_file(path, "0", fd=fd)  # 0: the process that writes


def _load_hook(config: dict, key: str = "entry"):
    """The setup function to run before exec (``key`` "early": the one to run before the
    fork), imported now: once the process has joined a container's mount namespace (exec) or
    pivoted into its root, the package is out of reach."""
    hook = config.get("setup")
    if not hook or not hook.get(key):
        return None
    module, _, function = hook[key].partition(":")
    return getattr(importlib.import_module(module), function)


def _init_loop(child: int) -> None:
    """``--init``: stay PID 1, reap every zombie, pass signals on; exit as the command does.

    A process whose parent dies is re-parented to PID 1 of its namespace, which must wait()
    for it or it stays a zombie forever; a shell or a server as PID 1 rarely does. And PID 1
    gets no default signal handling: an unhandled SIGTERM is simply ignored. This loop (what
    tini does) fixes both.
    """
    for s in FORWARDED_SIGNALS:
        signal.signal(s, lambda n, _f: os.kill(child, n))
    while True:
        pid, status = os.wait()
        if pid == child:
            os._exit(exit_code_of(status))


def _await_adoption(launcher: int, stat: int, caller: int) -> None:
    """Adopted mode: wait until the launcher (``launcher``, its pidfd) has exited, so that
    this process is the caller's child now, then die with the caller from here on."""
    select.select([launcher], [], [])  # a pidfd is readable once its process has exited
    os.close(launcher)
    syscalls.set_parent_death_signal(signal.SIGKILL)
    # Armed first, then checked: a caller that died before would not signal us.
    parent = int(os.pread(stat, 4096, 0).rsplit(b")", 1)[1].split()[1])
    os.close(stat)
    if parent != caller:
        raise RuntimeError(
            f"the caller (pid {caller}) did not adopt the command: it died, or it is not a "
            "child subreaper"
        )


def _child(config: dict, sock: socket.socket, hook, launcher: int = -1) -> None:
    """Runs in the process that becomes the command. Never returns. ``launcher``: the
    launcher's pidfd when the caller adopts this process (see the module's docstring)."""
    code = EXIT_SETUP_FAILED
    try:
        if launcher < 0:
            syscalls.set_parent_death_signal(signal.SIGKILL)
        else:
            # Opened now, on the host's /proc: it names our parent by the caller's pid (in
            # the new PID namespace's own /proc, mounted by the setup hook, it would be 0).
            stat = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
        # Its own session, like a container's init: no controlling terminal shared with
        # the caller, so a Ctrl-C reaches it only through the launcher's forwarding.
        if config.get("setsid", True):
            os.setsid()
        if config.get("hostname"):
            syscalls.sethostname(config["hostname"])
        if config.get("mount_proc"):
            # A new PID namespace shows the host's processes until /proc is remounted;
            # make the change private first so it does not leak back to the host.
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            syscalls.mount(
                "proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
            )
        env = config.get("env")
        env = dict(os.environ) if env is None else dict(env)
        if hook is not None:
            # The hook may return environment defaults it learned inside (HOME of the user).
            found = hook(config["setup"].get("payload", {}))
            for key, value in (found or {}).items():
                env.setdefault(key, value)
        if config.get("tty"):
            # -t: the pseudo-terminal on our stdin becomes this session's controlling
            # terminal, so Ctrl-C and Ctrl-Z typed there signal the command. After the setup
            # hook: it may have put a terminal of the container's own on stdin (a console).
            import termios  # from sys.modules: main imported it, before any pivot_root

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if launcher >= 0:
            # Last before exec: the launcher's exit overlaps with the setup above.
            _await_adoption(launcher, stat, config["caller_pid"])
        if config.get("init"):
            command = os.fork()
            if command:
                sock.close()  # the command's exec closing its copy is the caller's signal
                _stop_explaining(config)
                _init_loop(command)
            # The command gets its own process group, in the foreground of the terminal:
            # a Ctrl-C reaches it once, not also through init's forwarding.
            os.setpgid(0, 0)
            if config.get("tty"):
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(0, os.getpgrp())
                signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        argv = config["argv"]
        code = EXIT_NOT_FOUND
        try:
            os.execvpe(argv[0], argv, env)
        except FileNotFoundError:
            where = (
                "no such file or directory"
                if "/" in argv[0]
                else ("executable file not found in $PATH")
            )
            raise LookupError(f'exec: "{argv[0]}": {where}') from None
        except (PermissionError, OSError) as e:
            code = EXIT_CANNOT_EXECUTE
            raise LookupError(f'exec: "{argv[0]}": {e.strerror or e}') from None
    except BaseException as e:  # report anything, then leave without Python cleanup
        try:
            send(sock, event="error", code=code, message=str(e), type=type(e).__name__)
        finally:
            os._exit(code)


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)  # close-on-exec: EOF tells the caller exec succeeded
    config = _recv_line(sock)
    _explain_to_caller(config)
    if config.get("tty"):
        # Not builtin, and only -t needs it: imported now, while the host's files are in
        # reach (pivot_root or joining a container's mount namespace hides them).
        import termios  # noqa: F401
    # The setup hook is imported while the caller plugs our new namespaces in (after
    # "unshared" below): two processes, two cores, a few milliseconds saved. Not when we join
    # a mount namespace (the package is out of reach in there) or make a user namespace
    # (until the caller writes its maps we are "nobody", who may not read the package).
    early_hook = "mnt" in config.get("join", {}) or "user" in config.get("new", [])
    hook = None
    try:
        if early_hook:
            hook = _load_hook(config)
        syscalls.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != config.get("caller_pid", os.getppid()):
            os._exit(EXIT_SETUP_FAILED)  # the caller died before we could watch for it
        join_cgroup, leave_cgroup = _cgroup_files(config)
        _join(config.get("join", {}))
        new = config.get("new", [])
        flags = 0
        for kind in new:
            if kind != "cgroup":
                flags |= syscalls.NS_FLAGS[kind]
        if flags:
            syscalls.unshare(flags)
        offsets = config.get("time_offsets")
        if "time" in new and offsets:
            syscalls.write_file(
                "/proc/self/timens_offsets",
                "".join(f"{clock} {int(sec)} 0\n" for clock, sec in offsets.items()),
            )
        send(sock, event="unshared", pid=os.getpid())
        if not early_hook:
            hook = _load_hook(config)
            early = _load_hook(config, "early")
            # Not when explaining: the caller explains its own steps meanwhile, and the two
            # would print interleaved, in an order that changes from run to run.
            if early is not None and "mnt" in new and not syscalls.explaining():
                # The setup's first part, in our new mount namespace, which the child will
                # share: it changes the payload the child inherits, to say what is done.
                early(config["setup"]["payload"])
        if _recv_line(sock).get("event") != "go":
            os._exit(EXIT_SETUP_FAILED)
        # Into the container's cgroup before forking: every process of it is born inside.
        _move_self(join_cgroup)
        if "cgroup" in new:
            # Only now: the caller has just moved us into the container's cgroup, and a
            # cgroup namespace takes the cgroup we are in at this moment as its root.
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
        if "user" in new:
            # The maps may also have been written by hand in before_go: read them back.
            _become_root_in_userns(
                bool(config.get("root_uid_mapped")) or _maps_root("uid"),
                bool(config.get("root_gid_mapped")) or _maps_root("gid"),
            )
    except BaseException as e:
        send(sock, event="error", code=EXIT_SETUP_FAILED, message=str(e), type=type(e).__name__)
        os._exit(EXIT_SETUP_FAILED)

    needs_fork = bool({"pid", "time"} & (set(new) | set(config.get("join", {}))))
    if not needs_fork:
        send(sock, event="forked", pid=os.getpid())
        _child(config, sock, hook)

    # Forward signals before forking so none is lost in between.
    child_pid = 0

    def forward(signum: int, _frame: object) -> None:
        if child_pid:
            try:
                os.kill(child_pid, signum)
            except ProcessLookupError:
                pass

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)
    # Adopted: the child waits on this pidfd of ours for our exit (see _await_adoption).
    launcher = os.pidfd_open(os.getpid()) if config.get("adopt") else -1
    child_pid = os.fork()
    if child_pid == 0:
        for s in FORWARDED_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        # The host's cgroup files are the launcher's: close-on-exec keeps them from the
        # command, but an --init PID 1 never execs, and through /proc/1/fd a root process
        # of the container could write itself out of its cgroup (and its limits).
        for fd, _ in leave_cgroup:  # (the join files were closed once written)
            os.close(fd)
        _child(config, sock, hook, launcher)
    try:
        # Out again: from now on this process only waits, and must not count against the
        # container's limits (--pids-limit 4 is the command and 3 more).
        _move_self(leave_cgroup)
    except OSError:
        pass  # the command runs; a launcher counted in its cgroup is the lesser harm
    send(sock, event="forked", pid=child_pid)
    sock.close()
    _stop_explaining(config)
    if launcher >= 0:
        os._exit(0)  # adopted: the caller, a child subreaper, waits for the child itself
    while True:
        try:
            _, status = os.waitpid(child_pid, 0)
            break
        except ChildProcessError:
            status = EXIT_SETUP_FAILED << 8
            break
    os._exit(exit_code_of(status))


if __name__ == "__main__":
    main(int(sys.argv[1]))

"""The kernel seam: the only module that calls libc.

Every system call containerlab makes to build a container goes through a function here.
Each one raises :class:`SyscallError` (an ``OSError`` that names the operation and the
path) on failure, and each one can *explain* itself: with ``CONTAINERLAB_EXPLAIN=1`` in
the environment (or :func:`set_explain`), it prints what it is about to do and the shell
command that does the same, so a container can be replayed by hand. Because explaining
happens where the doing happens, the two cannot drift apart.

This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import shlex
import socket
import struct
import sys

# --- namespace flags (linux/sched.h) -------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount flags (linux/mount.h) ------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2

# --- prctl options (linux/prctl.h) ----------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

# Namespace kinds by their /proc/PID/ns name, with their CLONE_NEW* flag.
NS_FLAGS = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

# The names the unshare(1) and nsenter(1) commands use for the same flags.
_CLONE_NAMES = {
    CLONE_NEWNS: "mount",
    CLONE_NEWUTS: "uts",
    CLONE_NEWIPC: "ipc",
    CLONE_NEWNET: "net",
    CLONE_NEWPID: "pid",
    CLONE_NEWUSER: "user",
    CLONE_NEWCGROUP: "cgroup",
    CLONE_NEWTIME: "time",
}

# libc.so.6 by name: ctypes.util.find_library would run ldconfig on every start.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long

# pivot_root has no glibc wrapper; call it by number.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "riscv64": 41}


class SyscallError(OSError):
    """A system call failed. Carries the operation (``mount``, ``setns``...) and the path.

    It is an ``OSError``, so ``errno`` is set and ``except OSError`` catches it.
    """

    def __init__(self, operation: str, err: int, path: str | None = None, detail: str = ""):
        super().__init__(err, os.strerror(err), path)
        self.operation = operation
        self.detail = detail

    def __str__(self) -> str:
        where = f" {self.filename}" if self.filename else ""
        detail = f" ({self.detail})" if self.detail else ""
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{self.operation}{where}: {self.strerror} [{name}]{detail}"


def _check(result: int, operation: str, path: str | None = None, detail: str = "") -> int:
    if result < 0:
        raise SyscallError(operation, ctypes.get_errno(), path, detail)
    return result


# --- explain mode ---------------------------------------------------------------------------
_explain_enabled: bool | None = None
# Where explain lines go when not to sys.stderr: a container's launcher sets it to a copy of
# its caller's stderr, since its own fds 0-2 are the container's stdio by then.
_explain_fd: int | None = None


def set_explain(enabled: bool | None) -> None:
    """Turn explain mode on or off for this process (None: follow ``CONTAINERLAB_EXPLAIN``)."""
    global _explain_enabled
    _explain_enabled = enabled


def set_explain_fd(fd: int | None) -> None:
    """Write explain lines to descriptor ``fd`` instead of ``sys.stderr`` (None: stderr)."""
    global _explain_fd
    _explain_fd = fd


def explaining() -> bool:
    """Whether each kernel action is printed with its shell equivalent."""
    if _explain_enabled is not None:
        return _explain_enabled
    return os.environ.get("CONTAINERLAB_EXPLAIN", "") not in ("", "0")


def explain(action: str, shell: str | None = None) -> None:
    """Print one step: what the kernel is asked to do, and the same thing as a shell command."""
    if not explaining():
        return
    line = f"[explain] {action}"
    if shell:
        line += f"\n          $ {shell}"
    # One write for the whole step: the caller and the container's launcher explain into
    # the same stderr at once, and two writes per step (print's text, then its newline)
    # could interleave with the other process's lines.
    try:
        if _explain_fd is None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        else:
            os.write(_explain_fd, (line + "\n").encode(errors="replace"))
    except OSError:
        pass  # who reads it is gone (a closed pipe): explaining must not stop the doing


def clone_flag_names(flags: int) -> list[str]:
    """Names of the namespace kinds set in a CLONE_NEW* mask, e.g. ``['mount', 'pid']``."""
    return [name for bit, name in _CLONE_NAMES.items() if flags & bit]


# --- namespaces -----------------------------------------------------------------------------
def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (PID and time ones: its children)."""
    names = clone_flag_names(flags)
    consts = " | ".join("CLONE_NEWNS" if n == "mount" else f"CLONE_NEW{n.upper()}" for n in names)
    explain(f"unshare({consts})", "unshare " + " ".join(f"--{n}" for n in names))
    _check(_libc.unshare(flags), "unshare", None, ",".join(names))


def setns(fd: int, nstype: int = 0, path: str | None = None, *, quiet: bool = False) -> None:
    """Join the namespace that ``fd`` (an open ``/proc/PID/ns/KIND``) refers to.

    ``quiet`` skips the explain line, for a caller that explains the whole step itself (a
    thread popping into a container's netns to open a netlink socket there, and back).
    """
    kind = ",".join(clone_flag_names(nstype)) or "any"
    if not quiet:
        explain(f"setns({path or fd}, {kind})", f"nsenter --{kind}={path}" if path else None)
    _check(_libc.setns(fd, nstype), "setns", path, kind)


# --- mounts ---------------------------------------------------------------------------------
_FLAG_WORDS = [
    (MS_RDONLY, "ro"),
    (MS_NOSUID, "nosuid"),
    (MS_NODEV, "nodev"),
    (MS_NOEXEC, "noexec"),
    (MS_RELATIME, "relatime"),
    (MS_STRICTATIME, "strictatime"),
]


def _mount_shell(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> str:
    q = shlex.quote
    prop = {MS_PRIVATE: "private", MS_SLAVE: "slave", MS_SHARED: "shared"}
    for bit, word in prop.items():
        if flags & bit:
            return f"mount --make-{'r' if flags & MS_REC else ''}{word} {q(target)}"
    if flags & MS_MOVE:
        return f"mount --move {q(source or '')} {q(target)}"
    opts = [word for bit, word in _FLAG_WORDS if flags & bit]
    if flags & MS_REMOUNT:
        opts.insert(0, "remount" + (",bind" if flags & MS_BIND else ""))
        return f"mount -o {','.join(opts)} {q(target)}"
    if data:
        opts.append(data)
    if flags & MS_BIND:
        verb = "--rbind" if flags & MS_REC else "--bind"
        return f"mount {verb} {q(source or '')} {q(target)}"
    o = f" -o {q(','.join(opts))}" if opts else ""
    return f"mount -t {fstype} {q(source or 'none')} {q(target)}{o}"


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2): attach a filesystem, a bind mount, or change a mount's propagation."""
    explain(
        f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})",
        _mount_shell(source, target, fstype, flags, data),
    )
    enc = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
    r = _libc.mount(enc[0], enc[1], enc[2], flags, enc[3])
    _check(r, "mount", target, f"type={fstype}" if fstype else "")


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2): detach a mount; ``MNT_DETACH`` does it lazily, as ``umount -l``."""
    lazy = "-l " if flags & MNT_DETACH else ""
    explain(f"umount2({target!r}, {flags})", f"umount {lazy}{shlex.quote(target)}")
    _check(_libc.umount2(os.fsencode(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` this mount namespace's root, the old one at ``put_old``."""
    explain(
        f"pivot_root({new_root!r}, {put_old!r})",
        f"pivot_root {shlex.quote(new_root)} {shlex.quote(put_old)}",
    )
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise SyscallError("pivot_root", _errno.ENOSYS, new_root, "unknown architecture")
    r = _libc.syscall(nr, os.fsencode(new_root), os.fsencode(put_old))
    _check(r, "pivot_root", new_root)


def chroot(path: str) -> None:
    """chroot(2): change this process's idea of ``/`` (nothing else: see the breakout)."""
    explain(f"chroot({path!r})", f"chroot {shlex.quote(path)}")
    try:
        os.chroot(path)
    except OSError as e:
        raise SyscallError("chroot", e.errno or 0, path) from None


# --- identity and process attributes ---------------------------------------------------------
def sethostname(name: str) -> None:
    """sethostname(2): set the hostname of the current UTS namespace."""
    explain(f"sethostname({name!r})", f"hostname {shlex.quote(name)}")
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", None, name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2): process attributes (parent-death signal, no_new_privs, name...)."""
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl", None, str(option))


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies."""
    prctl(PR_SET_PDEATHSIG, sig)


def set_child_subreaper() -> None:
    """Make this process adopt orphaned descendants (so it can reap them)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_child_subreaper() -> bool:
    """Whether this process adopts its orphaned descendants (see :func:`set_child_subreaper`)."""
    flag = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag))  # the kernel writes it there
    return bool(flag.value)


def _cmdline_area() -> tuple[int, int]:
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48, 49 of proc(5)


def cmdline_room() -> int:
    """How many bytes a command line given to :func:`set_cmdline` may take."""
    start, end = _cmdline_area()
    return end - start


def set_cmdline(argv: list[str]) -> None:
    """Make ``/proc/self/cmdline`` (what ``ps`` shows) read ``argv``, and the name argv[0]'s.

    A forked process shows its parent's command line: the kernel reads it from the memory
    where exec put the arguments (``arg_start``..``arg_end`` in ``/proc/self/stat``). It is
    overwritten there, as setproctitle does; it must fit (see :func:`cmdline_room`), and
    the rest is filled with NUL bytes.
    """
    raw = b"".join(os.fsencode(a) + b"\0" for a in argv)
    start, end = _cmdline_area()
    if not start or len(raw) > end - start:
        raise ValueError(f"{len(raw)} bytes do not fit the {end - start} of the command line")
    ctypes.memmove(start, raw.ljust(end - start, b"\0"), end - start)
    name = ctypes.create_string_buffer(os.fsencode(os.path.basename(argv[0]))[:15])
    prctl(PR_SET_NAME, ctypes.addressof(name))


# --- files ----------------------------------------------------------------------------------
def write_file(path: str, data: str, *, append: bool = False, fd: int | None = None) -> None:
    """Write a small control file (``/proc/PID/uid_map``, a cgroup file) in one write(2).

    Kernel control files must be written in a single call: split writes are rejected.
    ``fd``: ``path`` opened earlier (for writing), e.g. before joining a mount namespace in
    which the path leads elsewhere; it is closed here.
    """
    explain(
        f"write {path}",
        f"echo {shlex.quote(data.rstrip(chr(10)))} {'>>' if append else '>'} {path}",
    )
    if fd is None:
        fd = open_for_write(path, append=append)
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise SyscallError("write", e.errno or 0, path, data.strip()) from None
    finally:
        os.close(fd)


def open_for_write(path: str, *, append: bool = False) -> int:
    """Open a control file for :func:`write_file` (close-on-exec, as every descriptor here)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC | (os.O_APPEND if append else 0))
    except OSError as e:
        raise SyscallError("open", e.errno or 0, path) from None


# --- network device flags --------------------------------------------------------------------
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def set_link_up(ifname: str) -> None:
    """Bring a network interface up with the SIOCSIFFLAGS ioctl (``ip link set IF up``).

    Used for ``lo`` in a new network namespace, where it starts down; the full netlink
    work (addresses, routes, veths) belongs to ``containerlab.network``.
    """
    explain(f"ioctl(SIOCSIFFLAGS, {ifname} |= IFF_UP)", f"ip link set {ifname} up")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", ifname.encode(), 0)
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq)
            flags = struct.unpack("16sH14x", res)[1] | _IFF_UP
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags))
        except OSError as e:
            raise SyscallError("ioctl(SIOCSIFFLAGS)", e.errno or 0, ifname) from None

"""The root filesystem: what ``/`` is for a container, and how it is made safe.

A container's files are an ordinary directory tree (here: one static busybox binary and the
links that make it hundreds of commands). Three steps turn that directory into a root:

1. a private mount namespace, so the container's mounts never reach the host;
2. ``pivot_root`` into the directory and a lazy unmount of the old root: unlike ``chroot``,
   which only changes one process's idea of ``/`` and is escaped with a few ``chdir("..")``,
   this removes the host's tree from the namespace altogether;
3. the special filesystems a program expects (``/proc``, a ``/dev`` of its own, ``/sys``
   read-only), with the paths that would leak host information masked, as runc does.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from containerlab import syscalls
from containerlab.errors import RootfsError

# shutil, subprocess, tempfile and json are imported where used: the container init imports
# this module on every start, and needs none of them.

S = syscalls

#: Paths hidden from a container (runc's and Docker's defaults): they expose the host's
#: hardware, kernel memory or key material. A directory gets an empty read-only tmpfs on
#: top, a file gets /dev/null bind-mounted over it.
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)

#: Paths a container may read but not write: writing them would change the host's kernel.
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: The device nodes every container gets in its own /dev: (name, major, minor).
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)

#: Symlinks in /dev that programs rely on.
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)

# Fixed timestamps make the base rootfs byte-for-byte the same on every machine.
_EPOCH = 0


# --- the base root filesystem ------------------------------------------------------------------
def find_busybox() -> Path:
    """The host's statically linked busybox (Debian/Ubuntu package ``busybox-static``)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(candidate)
        if p.is_file() and _is_static_elf(p):
            return p
    raise RootfsError(
        "no static busybox on this machine; install it: apt-get install busybox-static"
    )


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a dynamic loader (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != pt_interp
        for i in range(phnum)
    )


_ETC_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/hostname": "containerlab\n",
    "etc/resolv.conf": "",
    "etc/os-release": 'NAME="containerlab busybox"\nID=containerlab-busybox\n',
}
_DIRS = (
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc",
    "dev",
    "proc",
    "sys",
    "root",
    "tmp",
    "var",
    "var/tmp",
    "run",
    "home",
)


def build_busybox_rootfs(dest: str | os.PathLike[str]) -> Path:
    """Build a minimal root filesystem in ``dest`` from the host's busybox-static.

    One binary at /bin/busybox, a symlink per applet (``/bin/sh -> /bin/busybox`` ...), the
    usual directories and a few files in /etc. Deterministic: same busybox, same tree.
    """
    import shutil
    import subprocess

    dest = Path(dest)
    busybox = find_busybox()
    dest.mkdir(parents=True, exist_ok=True)
    for d in _DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "var/tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copyfile(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = dest / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        # Absolute target: resolved inside the container's root, whatever its host path.
        os.symlink("/bin/busybox", link)
    for rel, content in _ETC_FILES.items():
        (dest / rel).write_text(content)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (_EPOCH, _EPOCH), follow_symlinks=False)
    os.utime(dest, (_EPOCH, _EPOCH))
    return dest


# --- mount steps (run inside the container's new mount namespace) -----------------------------
def make_private(path: str = "/") -> None:
    """Stop mount events propagating back to the host (systemd makes / shared)."""
    S.mount(None, path, None, S.MS_REC | S.MS_PRIVATE)


def bind(source: str, target: str, *, readonly: bool = False, recursive: bool = True) -> None:
    """Bind-mount ``source`` on ``target``; read-only needs a second (remount) call."""
    S.mount(source, target, None, S.MS_BIND | (S.MS_REC if recursive else 0))
    if readonly:
        remount_readonly(target)


def remount_readonly(target: str) -> None:
    """Make an existing bind mount read-only, keeping its nosuid/nodev/noexec flags."""
    keep = os.statvfs(target).f_flag & (S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)
    S.mount(None, target, None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | keep)


def _mountpoint(path: str) -> str:
    # An image need not have /proc, /dev or /sys (FROM scratch): make the mount point, as
    # runc does; it lands in the container's writable layer, never in the image.
    os.makedirs(path, exist_ok=True)
    return path


def mount_proc(root: str) -> None:
    """A /proc for the container's PID namespace: it lists only the container's processes."""
    _mountpoint(f"{root}/proc")
    S.mount("proc", f"{root}/proc", "proc", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)


def mount_sys(root: str) -> None:
    """/sys read-only: devices are visible, nothing can be changed."""
    _mountpoint(f"{root}/sys")
    S.mount("sysfs", f"{root}/sys", "sysfs", S.MS_RDONLY | S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)


def mount_dev(root: str) -> None:
    """A /dev of the container's own: a tmpfs with the standard nodes, devpts, shm, mqueue.

    The host's /dev holds disks and every terminal; a container gets just the harmless
    nodes, its own pseudo-terminal instance, and its own shared-memory tmpfs.
    """
    dev = _mountpoint(f"{root}/dev")
    S.mount("tmpfs", dev, "tmpfs", S.MS_NOSUID | S.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = f"{dev}/{name}"
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)  # the umask trimmed the mode
        except PermissionError:
            # In a user namespace mknod is refused: bind the host's node instead, as runc does.
            open(path, "w").close()
            S.mount(f"/dev/{name}", path, None, S.MS_BIND)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    for sub in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{sub}", 0o755)
    # newinstance: the container's ptys are its own, numbered from 0, invisible to the host.
    try:
        S.mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            S.MS_NOSUID | S.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        )
    except OSError:
        # gid 5 (tty) may not be mapped in a user namespace; runc retries without it.
        S.mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            S.MS_NOSUID | S.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
    S.mount(
        "shm",
        f"{dev}/shm",
        "tmpfs",
        S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC,
        "mode=1777,size=65536k",
    )
    S.mount("mqueue", f"{dev}/mqueue", "mqueue", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC)


def pivot_into(root: str) -> None:
    """Make ``root`` the ``/`` of this mount namespace and drop the old root entirely.

    pivot_root needs the new root to be a mount point, hence the bind mount onto itself.
    ``pivot_root(".", ".")`` (runc's trick) stacks the old root on top of the new one, and
    the lazy unmount removes it: no directory of the host is reachable any more.
    """
    S.mount(root, root, None, S.MS_BIND | S.MS_REC)
    os.chdir(root)
    S.pivot_root(".", ".")
    # The old root must not propagate its unmount to the host: make it private first.
    S.mount(None, ".", None, S.MS_REC | S.MS_PRIVATE)
    S.umount2(".", S.MNT_DETACH)
    os.chdir("/")


def mask_paths(
    masked: tuple[str, ...] = MASKED_PATHS, readonly: tuple[str, ...] = READONLY_PATHS
) -> None:
    """Hide and write-protect the paths in ``masked``/``readonly`` (after pivot_root)."""
    for path in masked:
        if os.path.isdir(path):
            S.mount("tmpfs", path, "tmpfs", S.MS_RDONLY)
        elif os.path.exists(path):
            S.mount("/dev/null", path, None, S.MS_BIND)
    for path in readonly:
        if os.path.exists(path):
            bind(path, path, readonly=True)


def setup_root(
    root: str, *, new_net: bool = True, masks: bool = True, prepared: bool = False
) -> None:
    """All of the above, in order, for a directory that is already the container's tree.

    ``new_net`` says whether the container has its own network namespace: sysfs may only be
    mounted fresh there; otherwise the host's /sys is bind-mounted read-only. ``prepared``:
    :func:`prepare_root` has been done already (by the runtime's launcher).
    """
    if not prepared:
        prepare_root(root, new_net=new_net)
    mount_proc(root)
    pivot_into(root)
    if masks:
        mask_paths()


def prepare_root(root: str, *, new_net: bool = True) -> None:
    """The part of :func:`setup_root` that any process of the container's mount namespace
    can do, not only one inside its PID namespace (/proc shows the PID namespace of whoever
    mounts it): /dev, and /sys (which shows the network namespace of whoever mounts it)."""
    mount_dev(root)
    if new_net:
        mount_sys(root)
    else:
        bind("/sys", _mountpoint(f"{root}/sys"), readonly=True)


# --- reading the mount table ---------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo."""

    mount_id: int  # unique id of the mount
    parent_id: int  # the mount it sits on
    root: str  # which directory of the filesystem is mounted (a bind mount shows a subdir)
    mountpoint: str  # where, relative to the process's root
    options: str  # per-mount options (ro/rw, nosuid...)
    propagation: str  # "shared:N", "master:N", or "private" when none
    fstype: str
    source: str
    super_options: str  # options of the filesystem itself


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return s.encode().decode("unicode_escape") if "\\" in s else s


def mountinfo(pid: int | str = "self") -> list[Mount]:
    """The mount table of a process's mount namespace, as the process sees it."""
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, right = line.rstrip("\n").split(" - ", 1)
            fields = left.split()
            fstype, source, super_opts = ([*right.split(" ", 2), "", ""])[:3]
            tags = fields[6:]
            out.append(
                Mount(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    root=_unescape(fields[3]),
                    mountpoint=_unescape(fields[4]),
                    options=fields[5],
                    propagation=" ".join(tags) or "private",
                    fstype=fstype,
                    source=_unescape(source),
                    super_options=super_opts,
                )
            )
    return out


# --- the chroot breakout, and why pivot_root defeats it ---------------------------------------
@dataclass(frozen=True)
class BreakoutResult:
    """What a process that tried to escape its root saw afterwards."""

    method: str  # "chroot" or "pivot_root"
    escaped: bool  # True when the host's tree was reachable after the attempt
    root_listing: tuple[str, ...]  # what "/" contained after the attempt
    evidence: str  # the host path the check looked for


def breakout(rootfs: str | os.PathLike[str], method: str = "chroot") -> BreakoutResult:
    """Confine a process with ``method``, then try the classic chroot escape from inside.

    The escape: as root, chroot into a subdirectory while keeping the working directory
    outside it, walk up with ``chdir("..")`` (nothing stops a cwd that is outside the root),
    and ``chroot(".")`` at the top. After ``chroot`` that reaches the host's ``/``; after
    ``pivot_root`` with the old root unmounted, the top is the container's own root.
    The attempt runs in a child process, so the caller's root is never touched.
    """
    import json
    import subprocess
    import sys
    import tempfile

    if method not in ("chroot", "pivot_root"):
        raise RootfsError(f"unknown confinement '{method}'; use 'chroot' or 'pivot_root'")
    rootfs = os.path.realpath(rootfs)
    if not os.path.isdir(rootfs):
        raise RootfsError(f"no root filesystem at {rootfs}; build one with build_busybox_rootfs()")
    # The escape needs a directory to chroot into; make it in the rootfs' /tmp, remove it after.
    scratch = tempfile.mkdtemp(prefix=".breakout-", dir=os.path.join(rootfs, "tmp"))
    inside = "/tmp/" + os.path.basename(scratch)
    code = (
        "from containerlab.rootfs import _breakout_child; "
        f"_breakout_child({rootfs!r}, {method!r}, {inside!r})"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
    finally:
        os.rmdir(scratch)
    if res.returncode != 0:
        raise RootfsError(f"the breakout helper failed: {res.stderr.strip()}")
    data = json.loads(res.stdout)
    return BreakoutResult(method, data["escaped"], tuple(data["listing"]), rootfs)


def _breakout_child(rootfs: str, method: str, scratch: str) -> None:
    """Runs in a throwaway process: confine, attempt the escape, report as JSON."""
    import json

    if method == "chroot":
        S.chroot(rootfs)
        os.chdir("/")
    else:
        S.unshare(S.CLONE_NEWNS)
        make_private("/")
        pivot_into(rootfs)
    # --- the escape attempt -----------------------------------------------------------
    S.chroot(scratch)  # our cwd ("/" of the old root) is now outside our root
    for _ in range(64):
        os.chdir("..")  # the kernel only stops ".." at the root: we are not under it
    S.chroot(".")
    listing = sorted(os.listdir("/"))
    escaped = os.path.isdir(rootfs)  # the rootfs' host path exists only on the host
    print(json.dumps({"escaped": escaped, "listing": listing}))

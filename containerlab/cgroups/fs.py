"""Finding the cgroup hierarchies, and the few file operations a cgroup driver needs.

A cgroup is a directory in a ``cgroup`` (v1) or ``cgroup2`` filesystem: ``mkdir`` creates
one, writing a pid into its ``cgroup.procs`` moves a process in, writing its other files
sets limits, ``rmdir`` removes it once it is empty. Every write goes through
``syscalls.write_file`` and every mkdir/rmdir is explained here, so explain mode shows the
whole thing as shell commands.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

from containerlab import syscalls
from containerlab.errors import CgroupError

#: The v1 controllers a container uses (``devices``, ``net_cls``... are left alone).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "blkio")

#: The v2 controllers a container uses, in the order they are enabled.
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mountpoint: str  # where it is mounted, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup
    root: str  # which cgroup of the hierarchy is mounted there ("/" unless bind-mounted)
    version: int  # 1 (cgroup) or 2 (cgroup2)
    controllers: frozenset[
        str
    ]  # v1: the controllers bound to it; v2: empty (see cgroup.controllers)

    @property
    def key(self) -> str:
        """How ``/proc/PID/cgroup`` names it: ``cpu,cpuacct``, or ``""`` for cgroup2."""
        return ",".join(sorted(self.controllers)) if self.version == 1 else ""

    def dir(self, cgroup_path: str) -> str:
        """The directory of a cgroup given by its path in the hierarchy (as /proc/PID/cgroup)."""
        rel = cgroup_path
        if self.root != "/" and (rel == self.root or rel.startswith(self.root + "/")):
            rel = rel[len(self.root) :]
        return os.path.join(self.mountpoint, rel.lstrip("/")).rstrip("/") or "/"


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """Every cgroup hierarchy mounted in this mount namespace (the first mount of each)."""
    out: list[Hierarchy] = []
    seen = set()
    with open(mountinfo) as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, rfields = left.split(), right.split()
            fstype, superopts = rfields[0], rfields[2] if len(rfields) > 2 else ""
            if fstype == "cgroup2":
                h = Hierarchy(fields[4], fields[3], 2, frozenset())
            elif fstype == "cgroup":
                opts = set(superopts.split(","))
                ctrls = frozenset(c for c in opts if c in V1_CONTROLLERS)
                if not ctrls:
                    continue  # name=systemd and friends: no resources to control
                h = Hierarchy(fields[4], fields[3], 1, ctrls)
            else:
                continue
            if (h.version, h.controllers) not in seen:
                seen.add((h.version, h.controllers))
                out.append(h)
    return out


def version() -> str:
    """``"v2"`` on a pure cgroup v2 system, ``"v1"`` when any v1 controller is mounted.

    A hybrid system (v1 controllers plus a controller-less cgroup2 at
    ``/sys/fs/cgroup/unified``, as this project's CI machine) counts as v1: its limits live
    in the v1 hierarchies.
    """
    forced = os.environ.get("CONTAINERLAB_CGROUP_VERSION", "")
    if forced in ("v1", "v2"):
        # For trying the v2 driver on a hybrid's controller-less cgroup2 mount (freeze, kill,
        # PSI work there without controllers); not for real containers.
        return forced
    hs = hierarchies()
    if any(h.version == 1 for h in hs):
        return "v1"
    if any(h.version == 2 for h in hs):
        return "v2"
    raise CgroupError(
        "no cgroup filesystem is mounted; mount one with "
        "`mount -t cgroup2 none /sys/fs/cgroup` (cgroup v2)"
    )


def cgroup_of(pid: int | str = "self") -> dict[str, str]:
    """Which cgroup ``pid`` is in, per hierarchy, from ``/proc/PID/cgroup``.

    Keys are the controllers of each v1 hierarchy (``memory``, ``cpu,cpuacct``...) and ``""``
    for the cgroup v2 line (``0::/path``); values are paths inside each hierarchy.
    """
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except FileNotFoundError:
        raise CgroupError(f"process {pid} does not exist; check the pid") from None
    out = {}
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def read(path: str) -> str | None:
    """A cgroup file's content, or None when the kernel does not offer that file."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise


def read_int(path: str) -> int | None:
    """An integer file (``memory.current``); None when absent, -1 for ``max``."""
    text = read(path)
    if text is None:
        return None
    text = text.strip()
    return -1 if text == "max" else int(text)


def write(path: str, value: str, hint: str = "") -> None:
    """Write one control file; a refusal becomes a ``CgroupError`` naming file, value and fix."""
    try:
        syscalls.write_file(path, value)
    except OSError as e:
        if e.errno == errno.ENOENT and not os.path.exists(path):
            raise CgroupError(
                f"cgroup file {path} does not exist: the kernel does not offer it here"
                + (f"; {hint}" if hint else "")
            ) from None
        reason = os.strerror(e.errno or 0).lower()
        raise CgroupError(
            f"the kernel refused {value.strip()!r} for {path} ({reason})"
            + (f"; {hint}" if hint else "")
        ) from None


class ParentVanished(CgroupError):
    """A shared parent was removed (by its last other child) while we were creating under it."""


def mkdir(path: str) -> bool:
    """Create one cgroup directory; False if it was already there."""
    syscalls.explain(f"mkdir {path}", f"mkdir {path}")
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise ParentVanished(f"cgroup {os.path.dirname(path)} vanished; retry") from None
    except OSError as e:
        raise CgroupError(
            f"cannot create cgroup {path} ({os.strerror(e.errno or 0).lower()}); run as root on a "
            "writable cgroup filesystem"
        ) from None
    return True


def rmdir(path: str, timeout: float = 5.0, must: bool = True) -> bool:
    """Remove an empty cgroup directory (only ``rmdir`` works: its files are not real files).

    Dying processes can keep it busy for a moment, so EBUSY is retried until ``timeout``.
    With ``must=False`` a busy or non-empty directory is left alone (a shared parent).
    """
    deadline = time.monotonic() + timeout
    syscalls.explain(f"rmdir {path}", f"rmdir {path}")
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or not must:
                if not must:
                    return False
                raise CgroupError(
                    f"cannot remove cgroup {path} ({os.strerror(e.errno or 0)})"
                ) from None
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"cannot remove cgroup {path}: it still has processes or child cgroups; "
                    f"kill them (cat {path}/cgroup.procs) and retry"
                ) from None
            time.sleep(0.005)


def read_pids(procs_file: str) -> list[int]:
    """The pids listed in a ``cgroup.procs`` file."""
    text = read(procs_file) or ""
    return [int(x) for x in text.split()]


def add_pid(procs_file: str, pid: int) -> None:
    """Move process ``pid`` (all its threads) into the cgroup of ``procs_file``."""
    try:
        syscalls.write_file(procs_file, str(pid))
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise CgroupError(
                f"process {pid} has exited; it cannot join {os.path.dirname(procs_file)} "
                "(add a process that is still running)"
            ) from None
        if e.errno == errno.EBUSY:
            raise CgroupError(
                f"cannot add process {pid} to {os.path.dirname(procs_file)}: the cgroup has "
                "child cgroups with controllers (cgroup v2 allows no internal processes); "
                "add it to a leaf"
            ) from None
        if e.errno == errno.ENOSPC:
            raise CgroupError(
                f"cannot add process {pid} to {os.path.dirname(procs_file)}: its cpuset has no "
                "cpus or memory nodes; write cpuset.cpus and cpuset.mems first"
            ) from None
        raise CgroupError(
            f"cannot add process {pid} to {os.path.dirname(procs_file)} "
            f"({os.strerror(e.errno or 0).lower()})"
        ) from None


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every millisecond or so until it holds, or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not predicate():
        if time.monotonic() > deadline:
            raise CgroupError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def default_parent() -> str:
    """The parent cgroup containers go under: ``CONTAINERLAB_CGROUP_PARENT``, else ``clab``."""
    return os.environ.get("CONTAINERLAB_CGROUP_PARENT") or "clab"


def check_name(name: str) -> None:
    """A cgroup name is one directory name: no slash, not ``.`` or ``..``, no blanks."""
    if not name or "/" in name or name in (".", "..") or any(c.isspace() for c in name):
        raise CgroupError(
            f"cgroup name {name!r} is not a plain directory name; use letters, digits, - and _"
        )

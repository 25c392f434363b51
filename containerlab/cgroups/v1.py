"""The cgroup v1 driver: one directory per controller hierarchy.

On v1 every controller (or group of co-mounted controllers, such as ``cpu,cpuacct``) has a
tree of its own under ``/sys/fs/cgroup/<controller>``, so one container's cgroup is a
directory in each tree and a process joins by writing its pid into each ``cgroup.procs``.
v1 has no "no internal processes" rule, so a relative parent can nest under our own cgroup
(``.../memory/<our cgroup>/clab/<name>``), as runc does with a relative cgroups path: the
container then stays inside any limit our own cgroup is under.
"""

from __future__ import annotations

import os
import signal
import time

from containerlab.cgroups import fs
from containerlab.cgroups.model import (
    CPU_PERIOD_US,
    FILES,
    Limits,
    parse_keyed,
)
from containerlab.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from containerlab.cgroups.stats import Stats

# The v2 name of a need (Limits.controllers) to its v1 controller.
_V1_NAME = {"memory": "memory", "cpu": "cpu", "cpuset": "cpuset", "pids": "pids", "io": "blkio"}

# A v1 limit file reads this (or more) when there is no limit (PAGE_COUNTER_MAX pages).
_UNLIMITED = 1 << 62


class V1Driver:
    """One cgroup: a directory in each v1 hierarchy it uses."""

    version = "v1"

    def __init__(self, dirs: dict[str, str], parent_dirs: dict[str, list[str]] | None = None):
        # Hierarchy key ("memory", "cpu,cpuacct"...) to the cgroup's directory in it.
        self.dirs = dirs
        # Per hierarchy, the parent's own directories (innermost last): removed with the last
        # cgroup that used them.
        self.parent_dirs = parent_dirs or {}

    # --- life cycle ---------------------------------------------------------------------------
    @classmethod
    def locate(cls, name: str, parent: str) -> V1Driver:
        own = fs.cgroup_of("self")
        dirs, parents = {}, {}
        for h in fs.hierarchies():
            if h.version != 1:
                continue
            # Absolute parent: from the hierarchy's root (Docker's /docker). Relative: under
            # the cgroup we are in (runc's relative cgroupsPath).
            base = "/" if parent.startswith("/") else own.get(h.key, "/")
            chain, d = [], h.dir(base)
            for p in [p for p in parent.split("/") if p]:
                d = os.path.join(d, p)
                chain.append(d)
            dirs[h.key] = os.path.join(d, name)
            parents[h.key] = chain
        if not dirs:
            raise CgroupError("no cgroup v1 controller is mounted; mount them or use cgroup v2")
        return cls(dirs, parents)

    @classmethod
    def create(cls, name: str, parent: str, limits: Limits) -> V1Driver:
        self = cls.locate(name, parent)
        have = {c for key in self.dirs for c in key.split(",")}
        missing = sorted(need for need in limits.controllers() if _V1_NAME[need] not in have)
        if missing:
            names = ", ".join(_V1_NAME[m] for m in missing)
            raise CgroupError(
                f"cgroup v1 controller {names} is not mounted "
                f"(mounted: {', '.join(sorted(have))}); "
                f"mount it (mount -t cgroup -o {_V1_NAME[missing[0]]} cgroup "
                f"/sys/fs/cgroup/{_V1_NAME[missing[0]]}) or leave that limit out"
            )
        made: list[str] = []  # hierarchies whose leaf we created (undone if a later one fails)
        try:
            for key, leaf in self.dirs.items():
                cpuset = "cpuset" in key.split(",")
                for attempt in range(3):  # a sibling's removal may take the parent away: retry
                    try:
                        for d in self.parent_dirs[key]:
                            fs.mkdir(d)
                            if cpuset:  # also when a concurrent creator has not filled it yet
                                _ensure_cpuset(d)
                        created = fs.mkdir(leaf)
                        break
                    except fs.ParentVanished:
                        if attempt == 2:
                            raise
                if not created:
                    raise CgroupError(
                        f"cgroup {leaf} already exists; pick another name or remove it "
                        f"(rmdir {leaf} once it is empty)"
                    )
                made.append(key)
                if cpuset:
                    _ensure_cpuset(leaf)
        except BaseException:
            V1Driver({k: self.dirs[k] for k in made}, self.parent_dirs).remove()
            raise
        return self

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    def paths(self) -> dict[str, str]:
        return dict(self.dirs)

    def path(self, controller: str | None = None) -> str:
        controller = _V1_NAME.get(controller or "memory", controller or "memory")
        for key, d in self.dirs.items():
            if controller in key.split(","):
                return d
        raise CgroupError(
            f"controller {controller} is not mounted as cgroup v1 here; use one of "
            f"{', '.join(sorted(self.dirs))}"
        )

    def _file(self, controller: str, name: str) -> str:
        return os.path.join(self.path(controller), name)

    def _has(self, controller: str) -> bool:
        return any(controller in key.split(",") for key in self.dirs)

    # --- processes ----------------------------------------------------------------------------
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def add(self, pid: int) -> None:
        for procs in self.procs_files():
            fs.add_pid(procs, pid)

    def self_join_files(self) -> list[str]:
        # `tasks` moves one thread. Given 0 (the writer itself) the kernel skips the lock that
        # moving a whole process takes, whose first taking waits for an RCU grace period:
        # milliseconds. A single-threaded process so moves all of itself, at once.
        return [os.path.join(d, "tasks") for d in self.dirs.values()]

    def self_leave_files(self) -> list[str]:
        own = fs.cgroup_of("self")
        return [
            os.path.join(h.dir(own[h.key]), "tasks")
            for h in fs.hierarchies()
            if h.version == 1 and h.key in self.dirs and h.key in own
        ]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            found.update(fs.read_pids(procs))
        return sorted(found)

    def populated(self) -> bool:
        return bool(self.pids())

    # --- limits -------------------------------------------------------------------------------
    def apply(self, limits: Limits) -> None:
        if limits.memory_high is not None:
            raise CgroupError(
                "memory_high (memory.high) exists only on cgroup v2; leave it out on v1 "
                "(memory.soft_limit_in_bytes is a different, weaker knob)"
            )
        self._apply_memory(limits)
        if limits.cpus is not None:
            quota = round(limits.cpus * CPU_PERIOD_US)
            fs.write(self._file("cpu", "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            fs.write(
                self._file("cpu", "cpu.cfs_quota_us"),
                str(quota if quota > 0 else -1),
                "the quota must be at least 1000 (0.01 cpus)",
            )
        if limits.cpu_shares is not None:
            fs.write(self._file("cpu", FILES["cpu_weight"].v1), str(limits.cpu_shares or 1024))
        if limits.cpuset_cpus is not None:
            parent = os.path.dirname(self.path("cpuset"))
            fs.write(
                self._file("cpuset", FILES["cpuset"].v1),
                limits.cpuset_cpus,
                f"cpus allowed here: {(fs.read(parent + '/cpuset.cpus') or '?').strip()}",
            )
        if limits.pids is not None:
            fs.write(
                self._file("pids", FILES["pids"].v1), str(limits.pids) if limits.pids > 0 else "max"
            )
        for io in limits.io:
            for attr, direction in (("rbps", "read"), ("wbps", "write")):
                # 0 removes a device's limit on v1.
                fs.write(
                    self._file("blkio", f"blkio.throttle.{direction}_bps_device"),
                    f"{io.device} {getattr(io, attr) or 0}",
                    "name a whole block disk by major:minor (see /proc/partitions)",
                )

    def _apply_memory(self, limits: Limits) -> None:
        if limits.memory is None and limits.memory_swap is None:
            return
        mem_file = self._file("memory", FILES["memory"].v1)
        swap_file = self._file("memory", FILES["memory_swap"].v1)
        hint = "memory in use could not be reclaimed below it; raise the limit or free memory first"
        steps = []
        if limits.memory is not None:
            steps.append((mem_file, limits.memory))
        if limits.memory_swap not in (None, 0):
            if not os.path.exists(swap_file):
                if limits.memory_swap != -1:
                    raise CgroupError(
                        f"{swap_file} is missing: this kernel does not account swap; boot with "
                        "swapaccount=1 or leave memory_swap unset"
                    )
            else:
                steps.append((swap_file, limits.memory_swap))
        if len(steps) == 2:
            # v1 keeps memory <= memory+swap at every moment: raise memsw first when growing.
            current_swap = fs.read_int(swap_file) or 0
            new_mem = limits.memory if limits.memory and limits.memory > 0 else _UNLIMITED
            if new_mem > current_swap:
                steps.reverse()
        for path, value in steps:
            fs.write(path, str(value if value > 0 else -1), hint)

    # --- readings -----------------------------------------------------------------------------
    def oom_kills(self) -> int:
        if not self._has("memory"):
            return 0
        text = fs.read(self._file("memory", "memory.oom_control")) or ""
        return parse_keyed(text).get("oom_kill", 0)

    def read(self) -> Stats:
        from containerlab.cgroups.stats import IoStat, Stats

        def rd(ctrl: str, name: str) -> int | None:
            return fs.read_int(self._file(ctrl, name)) if self._has(ctrl) else None

        def text(ctrl: str, name: str) -> str:
            return (fs.read(self._file(ctrl, name)) or "") if self._has(ctrl) else ""

        oom = parse_keyed(text("memory", "memory.oom_control"))
        cpu = parse_keyed(text("cpu", "cpu.stat"))
        usage_ns = rd("cpuacct", "cpuacct.usage")
        limit = rd("memory", "memory.limit_in_bytes")
        throttled = cpu.get("throttled_usec")
        if throttled is None:
            throttled = cpu.get("throttled_time", 0) // 1000
        io: dict[str, list[int]] = {}
        for line in text("blkio", "blkio.throttle.io_service_bytes_recursive").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("Read", "Write"):
                io.setdefault(parts[0], [0, 0])[parts[1] == "Write"] += int(parts[2])
        return Stats(
            memory_current=rd("memory", "memory.usage_in_bytes"),
            memory_peak=rd("memory", "memory.max_usage_in_bytes"),
            memory_limit=None if limit is None or limit >= _UNLIMITED else limit,
            oom=None,  # v1 does not count OOM events apart from kills
            oom_kill=oom.get("oom_kill", 0),
            cpu_usage_usec=None if usage_ns is None else usage_ns // 1000,
            nr_periods=cpu.get("nr_periods", 0),
            nr_throttled=cpu.get("nr_throttled", 0),
            throttled_usec=throttled,
            pids_current=rd("pids", "pids.current"),
            io=tuple(IoStat(dev, r, w) for dev, (r, w) in io.items()),
            taken_at=time.monotonic(),
        )

    # --- freezing and killing -----------------------------------------------------------------
    def _state(self) -> str:
        return (fs.read(self._file("freezer", "freezer.state")) or "").strip()

    def _freezer(self) -> str:
        if not self._has("freezer"):
            raise CgroupError(
                "the v1 freezer controller is not mounted; mount it "
                "(mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer) to pause containers"
            )
        return self._file("freezer", FILES["freeze"].v1)

    def freeze(self, timeout: float = 5.0) -> None:
        fs.write(self._freezer(), "FROZEN")
        # FREEZING until every task has stopped; writing FROZEN again nudges stragglers.
        fs.wait_for(lambda: self._state() == "FROZEN", timeout, f"{self._freezer()} to be FROZEN")

    def thaw(self, timeout: float = 5.0) -> None:
        fs.write(self._freezer(), "THAWED")
        fs.wait_for(lambda: self._state() == "THAWED", timeout, f"{self._freezer()} to be THAWED")

    def frozen(self) -> bool:
        return self._has("freezer") and self._state() == "FROZEN"

    def kill(self, timeout: float = 10.0) -> None:
        if not self.exists():
            return
        deadline = time.monotonic() + timeout
        freezer = self._has("freezer") and os.path.isdir(self.path("freezer"))
        while pids := self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"processes {pids} survived SIGKILL in {self.path()}; look for tasks in D state"
                )
            # Freeze so nothing forks between listing and killing, signal, then thaw so the
            # frozen tasks can act on SIGKILL (v1 frozen tasks do not die until thawed).
            if freezer:
                fs.write(self._freezer(), "FROZEN")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if freezer:
                fs.write(self._freezer(), "THAWED")
            time.sleep(0.002)

    def remove(self) -> None:
        if self.exists():
            self.kill()
            # Every hierarchy is tried, even if one stays busy: leave as little as possible.
            errors = []
            for d in self.dirs.values():
                try:
                    fs.rmdir(d)
                except CgroupError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        for chain in self.parent_dirs.values():
            for d in reversed(chain):
                if not fs.rmdir(d, must=False) and os.path.isdir(d):
                    break


def _ensure_cpuset(directory: str) -> None:
    """A new v1 cpuset starts with no cpus and no memory nodes: copy the parent's."""
    parent = os.path.dirname(directory)
    if not os.path.isdir(directory):
        raise fs.ParentVanished(f"cgroup {directory} vanished; retry")
    for name in ("cpuset.cpus", "cpuset.mems"):
        if (fs.read(os.path.join(directory, name)) or "").strip():
            continue
        value = (fs.read(os.path.join(parent, name)) or "").strip()
        if not value:
            raise CgroupError(
                f"{parent}/{name} is empty, so {directory} cannot get any; write it first "
                f"(echo 0 > {parent}/{name})"
            )
        fs.write(os.path.join(directory, name), value)

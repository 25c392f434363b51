"""The cgroup v2 driver: one directory per cgroup in the single unified hierarchy.

v2 rules this driver follows: a controller is usable in a cgroup only when its parent lists it
in ``cgroup.subtree_control``, so every ancestor from the root down enables it; and a cgroup
that hands controllers to children may not hold processes itself ("no internal processes"),
so processes only ever go into the leaf. The parent lives at the root of the hierarchy
(``/sys/fs/cgroup/clab``), not under our own cgroup: ours holds our own process (and under
systemd, a service's cgroup holds the service), so it could not enable controllers for a child.
"""

from __future__ import annotations

import errno
import os
import signal
import time

from containerlab.cgroups import fs
from containerlab.cgroups.model import (
    CPU_PERIOD_US,
    FILES,
    Limits,
    cpu_shares_to_weight,
    parse_keyed,
)
from containerlab.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from containerlab.cgroups.stats import Stats


def _mount() -> fs.Hierarchy:
    for h in fs.hierarchies():
        if h.version == 2:
            return h
    raise CgroupError("no cgroup2 filesystem is mounted; `mount -t cgroup2 none /sys/fs/cgroup`")


def _controllers(directory: str, file: str = "cgroup.controllers") -> set[str]:
    return set((fs.read(os.path.join(directory, file)) or "").split())


def _limit(value: int | None) -> str:
    return "max" if value is None or value < 0 else str(value)


class V2Driver:
    """One cgroup in the unified hierarchy."""

    version = "v2"

    def __init__(self, directory: str, parent_dirs: list[str] | None = None):
        self.dir = directory  # the cgroup's directory
        # Parent directories under the root that this cgroup's parent consists of (innermost
        # last); removed on remove() when no sibling still uses them.
        self.parent_dirs = parent_dirs or []

    # --- life cycle ---------------------------------------------------------------------------
    @classmethod
    def locate(cls, name: str, parent: str) -> V2Driver:
        h = _mount()
        parts = [p for p in parent.split("/") if p]
        dirs, d = [], h.mountpoint
        for p in parts:
            d = os.path.join(d, p)
            dirs.append(d)
        return cls(os.path.join(d, name), dirs)

    @classmethod
    def create(cls, name: str, parent: str, limits: Limits) -> V2Driver:
        self = cls.locate(name, parent)
        root = _mount().mountpoint
        available = _controllers(root)
        need = limits.controllers()
        missing = need - available
        if missing:
            raise CgroupError(
                f"cgroup v2 controller {', '.join(sorted(missing))} is not available "
                f"({root}/cgroup.controllers lists: {' '.join(sorted(available)) or 'nothing'}); "
                "use a kernel with it enabled, or leave that limit out"
            )
        wanted = [c for c in fs.V2_CONTROLLERS if c in available]
        for attempt in range(3):  # a sibling may remove the shared parent meanwhile: retry
            try:
                for d in [root, *self.parent_dirs]:
                    if d != root:
                        fs.mkdir(d)
                    wanted = self._delegate(d, wanted, need)
                if not fs.mkdir(self.dir):
                    raise CgroupError(
                        f"cgroup {self.dir} already exists; pick another name or remove it "
                        f"(rmdir {self.dir} once it is empty)"
                    )
                return self
            except fs.ParentVanished:
                if attempt == 2:
                    raise
        return self

    @staticmethod
    def _delegate(directory: str, wanted: list[str], need: set[str]) -> list[str]:
        """Enable ``wanted`` controllers for the children of ``directory``; returns what worked."""
        if not os.path.isdir(directory):
            raise fs.ParentVanished(f"cgroup {directory} vanished; retry")
        enabled = _controllers(directory, "cgroup.subtree_control")
        ok = []
        for c in wanted:
            if c in enabled:
                ok.append(c)
                continue
            try:
                fs.write(os.path.join(directory, "cgroup.subtree_control"), f"+{c}")
                ok.append(c)
            except CgroupError:
                if c not in need:
                    continue  # only for readings: do without it
                procs = fs.read_pids(os.path.join(directory, "cgroup.procs"))
                why = (
                    f"it holds processes ({len(procs)}) and v2 allows no internal processes; "
                    "use a parent at the root (CONTAINERLAB_CGROUP_PARENT=/clab)"
                    if procs
                    else "check its cgroup.controllers and cgroup.type"
                )
                raise CgroupError(
                    f"cannot enable the {c} controller in {directory}/cgroup.subtree_control: {why}"
                ) from None
        return ok

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def paths(self) -> dict[str, str]:
        return {"": self.dir}

    def path(self, controller: str | None = None) -> str:
        if controller and controller not in self.controllers() and controller != "cgroup":
            raise CgroupError(
                f"controller {controller} is not enabled in {self.dir}; enable it in the parent's "
                "cgroup.subtree_control"
            )
        return self.dir

    def controllers(self) -> set[str]:
        return _controllers(self.dir)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # --- processes ----------------------------------------------------------------------------
    def procs_files(self) -> list[str]:
        return [self._file("cgroup.procs")]

    def add(self, pid: int) -> None:
        fs.add_pid(self._file("cgroup.procs"), pid)

    def self_join_files(self) -> list[str]:
        # v2 moves threads only inside a threaded subtree: a process moves by cgroup.procs.
        return [self._file("cgroup.procs")]

    def self_leave_files(self) -> list[str]:
        return [os.path.join(_mount().dir(fs.cgroup_of("self")[""]), "cgroup.procs")]

    def pids(self) -> list[int]:
        return fs.read_pids(self._file("cgroup.procs"))

    def _events(self) -> dict[str, int]:
        return parse_keyed(fs.read(self._file("cgroup.events")) or "")

    def populated(self) -> bool:
        ev = self._events()
        return bool(ev.get("populated", 0)) if ev else bool(self.pids())

    # --- limits -------------------------------------------------------------------------------
    def apply(self, limits: Limits) -> None:
        have = self.controllers()
        missing = limits.controllers() - have
        if missing:
            raise CgroupError(
                f"controller {', '.join(sorted(missing))} is not enabled for {self.dir}; enable it "
                "in its parent's cgroup.subtree_control (or leave that limit out)"
            )
        f = self._file
        if limits.memory is not None:
            fs.write(
                f(FILES["memory"].v2),
                _limit(limits.memory),
                "on v2 a limit below usage reclaims or OOM-kills; raise the limit",
            )
        if limits.memory_high is not None:
            fs.write(f(FILES["memory_high"].v2), _limit(limits.memory_high))
        if limits.memory_swap is not None and limits.memory_swap != 0:
            # Docker's --memory-swap is memory+swap; v2 limits swap alone (as runc converts it).
            swap = (
                "max" if limits.memory_swap < 0 else str(limits.memory_swap - (limits.memory or 0))
            )
            if not os.path.exists(f(FILES["memory_swap"].v2)):
                if swap != "max":
                    raise CgroupError(
                        f"{f(FILES['memory_swap'].v2)} is missing: this kernel does not account "
                        "swap; boot with swapaccount=1 or leave memory_swap unset"
                    )
            else:
                fs.write(f(FILES["memory_swap"].v2), swap)
        if limits.cpus is not None:
            quota = round(limits.cpus * CPU_PERIOD_US)
            value = f"{quota if quota > 0 else 'max'} {CPU_PERIOD_US}"
            fs.write(f(FILES["cpu_quota"].v2), value, "the quota must be at least 1000 (0.01 cpus)")
        if limits.cpu_shares is not None:
            weight = cpu_shares_to_weight(limits.cpu_shares) or 100  # 0: back to the default
            fs.write(f(FILES["cpu_weight"].v2), str(weight))
        if limits.cpuset_cpus is not None:
            fs.write(
                f(FILES["cpuset"].v2),
                limits.cpuset_cpus,
                f"cpus allowed here: {(fs.read(f('cpuset.cpus.effective')) or '?').strip()}",
            )
        if limits.pids is not None:
            fs.write(f(FILES["pids"].v2), _limit(limits.pids if limits.pids > 0 else None))
        for io in limits.io:
            rbps, wbps = _limit(io.rbps or None), _limit(io.wbps or None)
            fs.write(
                f(FILES["io"].v2),
                f"{io.device} rbps={rbps} wbps={wbps}",
                "name a whole block disk by major:minor (see /proc/partitions)",
            )

    # --- readings -----------------------------------------------------------------------------
    def oom_kills(self) -> int:
        return parse_keyed(fs.read(self._file("memory.events")) or "").get("oom_kill", 0)

    def read(self) -> Stats:
        from containerlab.cgroups.stats import IoStat, Stats, parse_psi

        f = self._file
        events = parse_keyed(fs.read(f("memory.events")) or "")
        cpu = parse_keyed(fs.read(f("cpu.stat")) or "")
        limit = fs.read_int(f("memory.max"))
        io = []
        for line in (fs.read(f("io.stat")) or "").splitlines():
            dev, *pairs = line.split()
            kv = dict(p.split("=", 1) for p in pairs)
            io.append(IoStat(dev, int(kv.get("rbytes", 0)), int(kv.get("wbytes", 0))))
        psi = {}
        for res in ("cpu", "memory", "io"):
            text = fs.read(f(f"{res}.pressure"))
            psi[res] = parse_psi(text) if text else None
        return Stats(
            memory_current=fs.read_int(f("memory.current")),
            memory_peak=fs.read_int(f("memory.peak")),
            memory_limit=None if limit is None or limit < 0 else limit,
            oom=events.get("oom", 0) if events else None,
            oom_kill=events.get("oom_kill", 0),
            cpu_usage_usec=cpu.get("usage_usec"),
            nr_periods=cpu.get("nr_periods", 0),
            nr_throttled=cpu.get("nr_throttled", 0),
            throttled_usec=cpu.get("throttled_usec", 0),
            pids_current=fs.read_int(f("pids.current")),
            io=tuple(io),
            cpu_pressure=psi["cpu"],
            memory_pressure=psi["memory"],
            io_pressure=psi["io"],
            taken_at=time.monotonic(),
        )

    # --- freezing and killing -----------------------------------------------------------------
    def _need(self, name: str, why: str) -> str:
        path = self._file(name)
        if not os.path.exists(path):
            raise CgroupError(f"{path} is missing: {why} needs Linux 5.2 or later")
        return path

    def freeze(self, timeout: float = 5.0) -> None:
        fs.write(self._need("cgroup.freeze", "freezing"), "1")
        fs.wait_for(lambda: self._events().get("frozen") == 1, timeout, f"{self.dir} to freeze")

    def thaw(self, timeout: float = 5.0) -> None:
        fs.write(self._need("cgroup.freeze", "thawing"), "0")
        fs.wait_for(lambda: self._events().get("frozen") == 0, timeout, f"{self.dir} to thaw")

    def frozen(self) -> bool:
        return self._events().get("frozen") == 1

    def kill(self, timeout: float = 10.0) -> None:
        if not self.exists():
            return
        if os.path.exists(self._file("cgroup.kill")):
            # One write kills every process, even ones forking right now (Linux 5.14+).
            fs.write(self._file("cgroup.kill"), "1")
        else:
            _signal_until_empty(self.pids, timeout)
        fs.wait_for(lambda: not self.populated(), timeout, f"{self.dir} to empty")

    def remove(self) -> None:
        if self.exists():
            self.kill()
            fs.rmdir(self.dir)
        # The shared parent goes too once no sibling uses it, innermost first.
        for d in reversed(self.parent_dirs):
            if not fs.rmdir(d, must=False) and os.path.isdir(d):
                break


def _signal_until_empty(list_pids, timeout: float) -> None:
    """SIGKILL every pid listed until none are left (processes may fork meanwhile)."""
    deadline = time.monotonic() + timeout
    while (pids := list_pids()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise
        time.sleep(0.002)

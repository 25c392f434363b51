"""What a cgroup is asked to do (``Limits``) and what it reports (``Stats``), as plain data.

The field names and units follow ``docker run`` and ``docker stats``, so a learner can map
each flag to the kernel file a driver writes; the drivers (``v1``, ``v2``) do the writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from containerlab.errors import CgroupError

#: The CFS period every ``--cpus`` value is expressed in (Docker's and runc's choice: 100 ms).
CPU_PERIOD_US = 100_000

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Docker's byte sizes: ``"512m"`` is 536870912; units b, k, m, g (and t) are powers of 1024."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise CgroupError(
            f"size {text!r} is not understood; write a number with an optional unit b, k, m or g "
            "(e.g. 512m)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_cpus(text: str | float) -> float:
    """``--cpus``: how many CPUs' worth of time per period, e.g. ``"0.5"`` is half a core."""
    try:
        value = float(text)
    except ValueError:
        raise CgroupError(f"cpus {text!r} is not a number; write e.g. 0.5 or 2") from None
    if value < 0:
        raise CgroupError(f"cpus {text!r} is negative; write 0 (no limit) or a positive number")
    return value


def cpu_shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` (2..262144, default 1024) to v2 ``cpu.weight`` (1..10000), as runc does.

    1024 shares become weight 39 (not 100): the linear map runc chose, kept for compatibility.
    """
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


@dataclass(frozen=True)
class IoLimit:
    """A maximum bandwidth on one block device (``--device-read-bps``/``--device-write-bps``)."""

    device: str  # "major:minor" of the block device, as in /proc/partitions (e.g. "254:0")
    rbps: int | None = None  # bytes per second it may read; None: no limit
    wbps: int | None = None  # bytes per second it may write; None: no limit


@dataclass(frozen=True)
class Limits:
    """The resource limits of one cgroup, in ``docker run`` terms. None leaves a knob alone."""

    memory: int | None = None  # --memory: bytes; the OOM killer acts above it (-1: unlimited)
    memory_high: int | None = None  # throttle and reclaim above this many bytes (v2 only)
    memory_swap: int | None = None  # --memory-swap: memory + swap total in bytes; -1 unlimited
    cpus: float | None = None  # --cpus: CPUs' worth of time per 100 ms period (0: unlimited)
    cpu_shares: int | None = None  # --cpu-shares: relative weight (v1 shares; v2 weight derived)
    cpuset_cpus: str | None = None  # --cpuset-cpus: which CPUs may run it, e.g. "0" or "0-1"
    pids: int | None = None  # --pids-limit: most processes and threads at once (<= 0: unlimited)
    io: tuple[IoLimit, ...] = ()  # maximum read/write bandwidth per block device

    def __post_init__(self) -> None:
        # Accept tuples ("254:0", rbps, wbps) for io, as the brief to the CLI spells them.
        io = tuple(x if isinstance(x, IoLimit) else IoLimit(*x) for x in self.io)
        object.__setattr__(self, "io", io)
        for name in ("memory", "memory_high"):
            v = getattr(self, name)
            if v is not None and v != -1 and v < 0:
                raise CgroupError(
                    f"{name} {v} is negative; write a size in bytes or -1 (unlimited)"
                )
        if self.memory_swap is not None and self.memory_swap not in (-1, 0):
            if self.memory is None or self.memory <= 0:
                raise CgroupError(
                    "memory_swap needs memory as well (it is memory plus swap, as --memory-swap); "
                    "set memory too"
                )
            if self.memory_swap < self.memory:
                raise CgroupError(
                    f"memory_swap {self.memory_swap} is below memory {self.memory}; it counts "
                    "memory plus swap, so make it at least as large (or -1 for unlimited swap)"
                )
        if self.cpus is not None:
            parse_cpus(self.cpus)
        if (
            self.cpu_shares is not None
            and self.cpu_shares != 0
            and not (2 <= self.cpu_shares <= 262144)
        ):
            raise CgroupError(f"cpu_shares {self.cpu_shares} is outside 2..262144; pick one inside")

    def controllers(self) -> set[str]:
        """The controllers (v2 names) these limits need."""
        need = set()
        if any(v is not None for v in (self.memory, self.memory_high, self.memory_swap)):
            need.add("memory")
        if self.cpus is not None or self.cpu_shares is not None:
            need.add("cpu")
        if self.cpuset_cpus is not None:
            need.add("cpuset")
        if self.pids is not None:
            need.add("pids")
        if self.io:
            need.add("io")
        return need


@dataclass(frozen=True)
class Psi:
    """Pressure stall information for one resource: the share of time tasks waited on it."""

    some_avg10: float  # % of the last 10 s in which at least one task was stalled
    some_avg60: float  # the same over 60 s
    some_avg300: float  # the same over 300 s
    some_total_usec: int  # total stalled time since the cgroup was made, in microseconds
    full_avg10: float | None = None  # % of the last 10 s in which all tasks were stalled
    full_total_usec: int | None = None  # total time all tasks were stalled (None for cpu, old)


@dataclass(frozen=True)
class IoStat:
    """Bytes one cgroup moved on one block device."""

    device: str  # "major:minor"
    rbytes: int  # bytes read
    wbytes: int  # bytes written


@dataclass(frozen=True)
class Stats:
    """One reading of a cgroup's counters (what ``docker stats`` shows, and more)."""

    memory_current: int | None  # bytes charged now (v2 memory.current; v1 usage_in_bytes)
    memory_peak: int | None  # highest memory_current seen (v2 memory.peak; v1 max_usage_in_bytes)
    memory_limit: int | None  # the memory limit in bytes; None: unlimited
    oom: int | None  # times usage hit the limit and the OOM path ran (v2 only; None on v1)
    oom_kill: int  # processes the OOM killer killed in this cgroup
    cpu_usage_usec: int | None  # CPU time used by all its processes, microseconds
    nr_periods: int  # CFS periods that had runnable tasks (with a quota set)
    nr_throttled: int  # of those, periods in which the quota ran out
    throttled_usec: int  # total time its tasks waited for the next period
    pids_current: int | None  # processes and threads alive in it
    io: tuple[IoStat, ...] = ()  # bytes read/written per device, where the kernel counts them
    cpu_pressure: Psi | None = None  # PSI (v2 only; None on v1)
    memory_pressure: Psi | None = None  # PSI (v2 only; None on v1)
    io_pressure: Psi | None = None  # PSI (v2 only; None on v1)
    taken_at: float = field(default=0.0, compare=False)  # time.monotonic() of the reading


def parse_psi(text: str) -> Psi:
    """Parse a ``*.pressure`` file: ``some avg10=0.00 avg60=0.00 avg300=0.00 total=0``."""
    lines = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        lines[kind] = dict(p.split("=", 1) for p in pairs)
    some, full = lines.get("some", {}), lines.get("full")
    return Psi(
        some_avg10=float(some.get("avg10", 0)),
        some_avg60=float(some.get("avg60", 0)),
        some_avg300=float(some.get("avg300", 0)),
        some_total_usec=int(some.get("total", 0)),
        full_avg10=float(full["avg10"]) if full else None,
        full_total_usec=int(full["total"]) if full else None,
    )


def parse_keyed(text: str) -> dict[str, int]:
    """Parse a flat-keyed file (``cpu.stat``, ``memory.events``): ``key value`` per line."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass(frozen=True)
class FileName:
    """The same knob under its cgroup v2 and v1 names."""

    v2: str  # file in the cgroup's directory on cgroup v2
    v1: str  # file (in that controller's hierarchy) on cgroup v1
    meaning: str  # what it does, in one line (for the notebook's table)


#: The v1/v2 file name differences in one place: the drivers write these, the notebook prints them.
FILES: dict[str, FileName] = {
    "memory": FileName("memory.max", "memory.limit_in_bytes", "hard memory limit (--memory)"),
    "memory_high": FileName("memory.high", "-", "throttle and reclaim above this (v2 only)"),
    "memory_swap": FileName(
        "memory.swap.max", "memory.memsw.limit_in_bytes", "swap (v2) or memory+swap (v1) limit"
    ),
    "memory_current": FileName("memory.current", "memory.usage_in_bytes", "memory in use now"),
    "memory_peak": FileName("memory.peak", "memory.max_usage_in_bytes", "highest memory use"),
    "memory_events": FileName("memory.events", "memory.oom_control", "oom and oom_kill counts"),
    "cpu_quota": FileName(
        "cpu.max", "cpu.cfs_quota_us + cpu.cfs_period_us", "CPU time per period (--cpus)"
    ),
    "cpu_weight": FileName("cpu.weight", "cpu.shares", "relative CPU share (--cpu-shares)"),
    "cpu_usage": FileName("cpu.stat usage_usec", "cpuacct.usage (ns)", "CPU time used"),
    "cpu_throttling": FileName(
        "cpu.stat nr_throttled, throttled_usec",
        "cpu.stat nr_throttled, throttled_time (ns)",
        "how often the quota ran out",
    ),
    "cpuset": FileName("cpuset.cpus", "cpuset.cpus", "which CPUs (--cpuset-cpus)"),
    "pids": FileName("pids.max", "pids.max", "most processes (--pids-limit)"),
    "pids_current": FileName("pids.current", "pids.current", "processes now"),
    "io": FileName(
        "io.max",
        "blkio.throttle.read_bps_device / write_bps_device",
        "bandwidth per device (--device-read-bps)",
    ),
    "io_stat": FileName("io.stat", "blkio.throttle.io_service_bytes_recursive", "bytes per device"),
    "freeze": FileName("cgroup.freeze (+ cgroup.events)", "freezer.state", "pause and unpause"),
    "kill": FileName("cgroup.kill", "-", "kill every process at once (v2, 5.14+)"),
    "pressure": FileName("cpu/memory/io.pressure", "-", "PSI: time stalled on a resource (v2)"),
    "procs": FileName("cgroup.procs", "cgroup.procs", "the processes in it; write a pid to move"),
    "children": FileName("cgroup.subtree_control", "-", "controllers handed to children (v2)"),
}

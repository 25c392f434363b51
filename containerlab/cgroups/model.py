"""What a cgroup is asked to do (``Limits``), as plain data; what it reports is in ``stats``.

The field names and units follow ``docker run`` and ``docker stats``, so a learner can map
each flag to the kernel file a driver writes; the drivers (``v1``, ``v2``) do the writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

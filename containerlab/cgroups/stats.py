"""What a cgroup reports (``Stats``, ``docker stats``'s numbers and more), as plain data.

Apart from ``model`` because a container's start and exit read none of it: the classes are
made on the first reading (``Cgroup.read``), not on every ``containerlab run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

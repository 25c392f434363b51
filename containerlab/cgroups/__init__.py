"""Control groups: how much of the machine a group of processes may use.

A cgroup is a directory in a special filesystem under ``/sys/fs/cgroup``. Writing a pid into
its ``cgroup.procs`` moves that process in (its children are born inside); writing its other
files sets limits (``memory.max``, ``cpu.max``, ``pids.max``...); reading them gives usage.
The kernel's *controllers* (memory, cpu, pids, io, cpuset, freezer) each enforce one kind of
limit. Docker gives every container one cgroup; so does containerlab.

Two versions exist. cgroup v2 (every learner's VM) is one tree, one directory per cgroup.
cgroup v1 (older systems, and hybrids such as this project's CI machine) has one tree per
controller, so a cgroup is one directory in each. ``Cgroup`` is the same API over both; the
differing file names are in ``FILES``.

Where the cgroups live (the *parent*, ``CONTAINERLAB_CGROUP_PARENT``, default ``clab``):

* an absolute parent (``/clab``) is taken from the root of each hierarchy, as Docker's
  cgroupfs driver does (``/sys/fs/cgroup/docker/<id>`` on v2,
  ``/sys/fs/cgroup/<ctrl>/docker/<id>`` on v1);
* a relative parent (``clab``) on v1 nests under the cgroup we run in, as runc does with a
  relative path: on a machine whose sandbox puts us in a memory cgroup, the container stays
  inside the sandbox's limit instead of escaping to the hierarchy root;
* on v2 a relative parent is taken from the root too: our own cgroup holds our own process
  (under systemd, a service's cgroup holds the service), and v2 forbids a cgroup with
  processes from handing controllers to children ("no internal processes"), so the parent
  must be a sibling at the root, ``/sys/fs/cgroup/clab``.

Usage::

    with cgroups.cgroup("demo", cgroups.Limits(memory=cgroups.parse_size("64m"))) as cg:
        proc = subprocess.Popen(cg.join_command(["sleep", "10"]))
        print(cg.read().memory_current)
    # gone: processes killed, directories removed
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from containerlab.cgroups import fs
from containerlab.cgroups.fs import cgroup_of, hierarchies, version
from containerlab.cgroups.model import (
    CPU_PERIOD_US,
    FILES,
    FileName,
    IoLimit,
    Limits,
    cpu_shares_to_weight,
    parse_cpus,
    parse_size,
)
from containerlab.cgroups.v1 import V1Driver
from containerlab.cgroups.v2 import V2Driver
from containerlab.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from containerlab.cgroups.stats import IoStat, Psi, Stats


def __getattr__(name: str):
    # Stats, Psi, IoStat are made on first use (see cgroups.stats): a container start and
    # exit read no statistics, and three frozen dataclasses cost it ~1.5 ms.
    if name in ("IoStat", "Psi", "Stats"):
        from containerlab.cgroups import stats

        return getattr(stats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CPU_PERIOD_US",
    "FILES",
    "Cgroup",
    "CgroupError",
    "FileName",
    "IoLimit",
    "IoStat",
    "Limits",
    "Psi",
    "Stats",
    "cgroup",
    "cgroup_of",
    "cpu_shares_to_weight",
    "hierarchies",
    "parse_cpus",
    "parse_size",
    "version",
]


def _driver_class() -> type[V1Driver] | type[V2Driver]:
    return V2Driver if version() == "v2" else V1Driver


def _check_root() -> None:
    if os.geteuid() != 0:
        from containerlab.errors import NotRootError

        raise NotRootError("cgroups can only be created as root; run with sudo")


class Cgroup:
    """One cgroup (v2: one directory; v1: one per hierarchy) and what can be done with it.

    Made by ``Cgroup.create`` (or ``cgroup()``), which is also a context manager: leaving
    the ``with`` kills whatever is left inside and removes the directories.
    """

    def __init__(self, name: str, driver: V1Driver | V2Driver):
        self.name = name  # the leaf directory's name
        self._driver = driver

    # --- making and finding -------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, limits: Limits | None = None, parent: str | None = None) -> Cgroup:
        """Create cgroup ``name`` under ``parent`` (default: ``CONTAINERLAB_CGROUP_PARENT`` or
        ``clab``), with ``limits`` applied. Use it in a ``with``, or call ``remove()``."""
        _check_root()
        fs.check_name(name)
        limits = limits or Limits()
        driver = _driver_class().create(name, parent or fs.default_parent(), limits)
        cg = cls(name, driver)
        try:
            driver.apply(limits)
        except BaseException:
            cg.remove()
            raise
        return cg

    @classmethod
    def open(cls, name: str, parent: str | None = None) -> Cgroup:
        """The existing cgroup ``name`` (from another process: ``update``, ``stats``, ``pause``)."""
        fs.check_name(name)
        driver = _driver_class().locate(name, parent or fs.default_parent())
        if not driver.exists():
            raise CgroupError(f"cgroup {name} does not exist under {parent or fs.default_parent()}")
        return cls(name, driver)

    @classmethod
    def from_paths(cls, paths: dict[str, str]) -> Cgroup:
        """The cgroup recorded by ``paths()`` (what a runtime stores in its state)."""
        if set(paths) == {""}:
            driver: V1Driver | V2Driver = V2Driver(paths[""])
        else:
            driver = V1Driver(dict(paths))
        return cls(os.path.basename(next(iter(paths.values()))), driver)

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, {self.version}, {self.path()!r})"

    # --- where it is --------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """``"v2"`` or ``"v1"``: which driver this cgroup uses."""
        return self._driver.version

    def path(self, controller: str | None = None) -> str:
        """Its directory (v1: in ``controller``'s hierarchy, memory by default)."""
        return self._driver.path(controller)

    def paths(self) -> dict[str, str]:
        """Every directory of it: ``{"": dir}`` on v2, hierarchy key to dir on v1."""
        return self._driver.paths()

    def exists(self) -> bool:
        return self._driver.exists()

    # --- processes ----------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move process ``pid`` in (every thread of it); what it forks afterwards is born inside."""
        self._driver.add(pid)

    def self_join_files(self) -> list[str]:
        """Files a process writes ``0`` (itself) into to move in, one per hierarchy.

        For a process that joins on its own, such as the launcher of ``namespaces.spawn``
        (``cgroup=``): on v1 these are the ``tasks`` files, which a single-threaded process
        joins without the grace period a write to ``cgroup.procs`` waits for.
        """
        return self._driver.self_join_files()

    def self_leave_files(self) -> list[str]:
        """The same files of the cgroups this process is in: a process that joined with
        :meth:`self_join_files` writes ``0`` into these to go back where it came from."""
        return self._driver.self_leave_files()

    def pids(self) -> list[int]:
        """The processes inside, from ``cgroup.procs``."""
        return self._driver.pids()

    def join_command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped in a shell that joins this cgroup first, then execs it.

        So the command is born inside (no window in which it runs unlimited), which is what a
        runtime gets by adding its launcher before letting it go.
        """
        joins = " && ".join(f"echo $$ > {shlex.quote(p)}" for p in self._driver.procs_files())
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *argv]

    # --- limits and readings ------------------------------------------------------------------
    def apply(self, limits: Limits) -> None:
        """Write ``limits`` (the knobs that are not None); works on a live cgroup (``update``)."""
        self._driver.apply(limits)

    def read(self) -> Stats:
        """Read the counters once (memory, oom, cpu, throttling, pids, io, PSI on v2)."""
        return self._driver.read()

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in here: ``read().oom_kill``
        from one file instead of a dozen (a container's exit asks only this)."""
        return self._driver.oom_kills()

    # --- pause, kill, remove ------------------------------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process inside where it stands (``docker pause``); returns once frozen."""
        self._driver.freeze(timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """Let frozen processes run again (``docker unpause``)."""
        self._driver.thaw(timeout)

    def frozen(self) -> bool:
        return self._driver.frozen()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every process inside and wait until it is empty."""
        self._driver.kill(timeout)

    def remove(self) -> None:
        """Kill what is left, remove the directories, and the parent once no sibling uses it."""
        self._driver.remove()


def cgroup(name: str, limits: Limits | None = None, parent: str | None = None) -> Cgroup:
    """``Cgroup.create`` under the name the rest of the package uses: ``with cgroup(...) as cg``."""
    return Cgroup.create(name, limits, parent)


def send_home(pid: int, like: int | str = "self") -> None:
    """Move ``pid`` back into the cgroups ``like`` (default: this process) is in.

    The container's launcher joins the container's cgroup so that the command it forks is
    born inside; once it has forked, it only waits, and must not count against the
    container's limits (a ``--pids-limit 4`` would otherwise leave room for 3 processes).
    """
    from containerlab import syscalls

    home = cgroup_of(like)
    for h in hierarchies():
        if h.key in home:
            try:
                syscalls.write_file(os.path.join(h.dir(home[h.key]), "cgroup.procs"), f"{pid}\n")
            except OSError as e:
                if e.errno != 3:  # ESRCH: it has exited meanwhile, nothing to move
                    raise

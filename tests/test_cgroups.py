"""cgroups on the real kernel: every limit is shown working on real processes.

Runs on the CI machine (a v1/v2 hybrid: the v1 driver) and on a pure cgroup v2 kernel (the
QEMU harness): each test detects the version and skips only what the running kernel
cannot do. Every cgroup is made with the context manager, so nothing is left behind.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import pytest

from containerlab import cgroups, syscalls
from containerlab.cgroups import CgroupError, Limits

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")

V = cgroups.version() if os.path.isdir("/sys/fs/cgroup") else "none"
MiB = 1 << 20
_counter = itertools.count()


def name() -> str:
    """A cgroup name no concurrent run can share."""
    return f"clab-test-{os.getpid()}-{next(_counter)}"


def ctl(cg: cgroups.Cgroup, controller: str, v2: str, v1: str) -> str:
    """The content of one control file, by its v2 or v1 name."""
    f = v2 if V == "v2" else v1
    with open(os.path.join(cg.path(controller), f)) as fh:
        return fh.read().strip()


@pytest.fixture
def procs():
    """Start processes inside a cgroup (born there, via join_command); all reaped at the end."""
    started: list[subprocess.Popen] = []

    def start(cg: cgroups.Cgroup, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cg.join_command(argv), **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()


def text(path: str) -> str:
    with open(path) as f:
        return f.read()


def wait_until(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def execed(p: subprocess.Popen, comm: str) -> None:
    """Wait until the join_command shell has joined every hierarchy and exec'd ``comm``."""
    wait_until(lambda: text(f"/proc/{p.pid}/comm").strip() == comm)


def joined(cg: cgroups.Cgroup, p: subprocess.Popen) -> None:
    """Wait until ``p`` is listed in the cgroup.procs of every directory of ``cg``.

    A process's own CPU time is no proof: under QEMU/TCG a shell burns tens of milliseconds
    starting up before its join_command prologue runs.
    """
    wait_until(
        lambda: all(str(p.pid) in text(f"{d}/cgroup.procs").split() for d in cg.paths().values()),
        timeout=20,
    )


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


BUSY = ["/bin/sh", "-c", "while :; do :; done"]
SLEEP = ["sleep", "60"]


# --- pure helpers ---------------------------------------------------------------------------
def test_parse_helpers_and_conversions():
    assert cgroups.parse_size("512m") == 512 * MiB
    assert cgroups.parse_size("1g") == 1 << 30
    assert cgroups.parse_size("64k") == 65536
    assert cgroups.parse_size("100b") == cgroups.parse_size("100") == 100
    assert cgroups.parse_cpus("0.5") == 0.5
    with pytest.raises(CgroupError, match="size '12x'"):
        cgroups.parse_size("12x")
    with pytest.raises(CgroupError, match="not a number"):
        cgroups.parse_cpus("half")
    # runc's shares -> weight map: the ends and Docker's default.
    assert cgroups.cpu_shares_to_weight(2) == 1
    assert cgroups.cpu_shares_to_weight(262144) == 10000
    assert cgroups.cpu_shares_to_weight(1024) == 39
    with pytest.raises(CgroupError, match="at least as large"):
        Limits(memory=64 * MiB, memory_swap=32 * MiB)
    with pytest.raises(CgroupError, match="cpu_shares 1 "):
        Limits(cpu_shares=1)
    assert Limits(io=[("8:0", 1, 2)]).io == (cgroups.IoLimit("8:0", 1, 2),)
    # The table the notebook prints: both names of each knob.
    assert cgroups.FILES["memory"].v1 == "memory.limit_in_bytes"
    assert cgroups.FILES["cpu_weight"] == cgroups.FileName(
        "cpu.weight", "cpu.shares", "relative CPU share (--cpu-shares)"
    )


def test_version_matches_the_mounts():
    types = {line.split(" - ")[1].split()[0] for line in text("/proc/self/mountinfo").splitlines()}
    assert V in ("v1", "v2")
    if V == "v2":
        assert "cgroup" not in types or not any(h.version == 1 for h in cgroups.hierarchies())
    else:
        assert any(h.version == 1 and "memory" in h.controllers for h in cgroups.hierarchies())


# --- life cycle -----------------------------------------------------------------------------
def test_create_join_and_remove_leaves_nothing(procs):
    n = name()
    with cgroups.cgroup(n) as cg:
        paths = cg.paths()
        assert all(os.path.isdir(d) and d.endswith(f"/clab/{n}") for d in paths.values())
        p = procs(cg, SLEEP)
        execed(p, "sleep")  # joined, then exec'd: one process, born inside
        assert cg.pids() == [p.pid]
        mine = cgroups.cgroup_of(p.pid)
        if V == "v2":
            assert mine[""] == f"/clab/{n}"
        else:
            assert mine["memory"].endswith(f"/clab/{n}")
            assert mine["pids"].endswith(f"/clab/{n}")
    assert p.wait(5) == -9  # killed on the way out
    for d in paths.values():
        assert not os.path.exists(d)
        assert not os.path.exists(os.path.dirname(d)) or os.listdir(os.path.dirname(d))


def test_parent_is_configurable(monkeypatch):
    monkeypatch.setenv("CONTAINERLAB_CGROUP_PARENT", "clab-alt/inner")
    with cgroups.cgroup(name()) as cg:
        assert all("/clab-alt/inner/clab-test-" in d for d in cg.paths().values())
        parents = {os.path.dirname(os.path.dirname(d)) for d in cg.paths().values()}
    assert not any(os.path.exists(p) for p in parents)  # clab-alt went with its last child


def test_v1_relative_parent_nests_under_our_own_cgroup():
    if V != "v1":
        pytest.skip("v1 only: on v2 the parent is at the root (no internal processes)")
    own = cgroups.cgroup_of("self")["memory"]
    with cgroups.cgroup(name()) as cg:
        assert cg.path("memory").startswith(f"/sys/fs/cgroup/memory{own.rstrip('/')}/clab/")


def test_v2_delegation_enables_controllers_in_ancestors():
    if V != "v2":
        pytest.skip("cgroup.subtree_control is cgroup v2 only")
    with cgroups.cgroup(name(), Limits(memory=64 * MiB, pids=10, cpus=0.5)) as cg:
        parent = os.path.dirname(cg.path())
        enabled = text(f"{parent}/cgroup.subtree_control").split()
        assert {"memory", "pids", "cpu"} <= set(enabled)
        assert text(f"{parent}/cgroup.procs") == ""  # no internal processes
        assert {"memory", "pids", "cpu"} <= set(text(f"{cg.path()}/cgroup.controllers").split())


def test_name_taken_and_bad_names():
    n = name()
    with cgroups.cgroup(n), pytest.raises(CgroupError, match="already exists"):
        cgroups.cgroup(n)
    with pytest.raises(CgroupError, match="plain directory name"):
        cgroups.cgroup("a/b")


def test_a_process_that_has_exited_cannot_join():
    p = subprocess.Popen(["true"])
    p.wait()
    with cgroups.cgroup(name()) as cg:
        with pytest.raises(CgroupError, match=f"process {p.pid} has exited"):
            cg.add(p.pid)
        assert cg.pids() == []


def test_remove_after_the_processes_exited_by_themselves(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, ["true"])
        assert p.wait(5) == 0
        wait_until(lambda: cg.pids() == [])
    assert not cg.exists()


def test_explain_mode_shows_the_shell_commands(capsys):
    syscalls.set_explain(True)
    try:
        with cgroups.cgroup(name(), Limits(pids=5)) as cg:
            pids_dir = cg.path("pids")
    finally:
        syscalls.set_explain(None)
    err = capsys.readouterr().err
    assert f"$ mkdir {pids_dir}" in err
    assert f"$ echo 5 > {pids_dir}/pids.max" in err
    assert f"$ rmdir {pids_dir}" in err


# --- limits ---------------------------------------------------------------------------------
def _swap_active() -> bool:
    with open("/proc/swaps") as f:
        return len(f.read().splitlines()) > 1


def test_memory_limit_oom_kills_a_hog(procs):
    limit = 64 * MiB
    # Docker's --memory-swap equal to --memory: no swap at all, so the hog cannot escape.
    swap = limit if _swap_active() else None
    with cgroups.cgroup(name(), Limits(memory=limit, memory_swap=swap)) as cg:
        hog = procs(cg, [sys.executable, "-c", "b = b'x' * (200 << 20)"])
        assert hog.wait(30) == -9  # SIGKILL from the OOM killer: Docker's exit code 137
        st = cg.read()
        kills = cg.oom_kills()  # the one counter a container's exit reads
    assert st.oom_kill == 1
    assert kills == 1
    assert st.memory_limit == limit
    assert limit // 2 < st.memory_peak <= limit + MiB
    if V == "v2":
        assert st.oom >= 1


def test_cpus_throttles_a_busy_loop(procs):
    with cgroups.cgroup(name(), Limits(cpus=0.2)) as cg:
        assert ctl(cg, "cpu", "cpu.max", "cpu.cfs_quota_us") in ("20000 100000", "20000")
        joined(cg, procs(cg, BUSY))
        time.sleep(0.2)
        a = cg.read()
        time.sleep(1.0)
        b = cg.read()
    share = (b.cpu_usage_usec - a.cpu_usage_usec) / 1e6 / (b.taken_at - a.taken_at)
    print(f"busy loop at --cpus 0.2 used {share:.3f} of a core, throttled {b.nr_throttled} times")
    assert 0.1 < share < 0.3
    assert b.nr_throttled > a.nr_throttled
    assert b.nr_periods >= b.nr_throttled
    assert b.throttled_usec > a.throttled_usec


FORK_BOMB = """
import os, time
n = 0
for _ in range(50):
    try:
        pid = os.fork()
    except OSError as e:
        print(f"forked {n}, then: {e.strerror}", flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
else:
    print(f"forked {n}", flush=True)
time.sleep(60)
"""


def test_pids_limit_stops_a_fork_bomb(procs):
    with cgroups.cgroup(name(), Limits(pids=8)) as cg:
        assert ctl(cg, "pids", "pids.max", "pids.max") == "8"
        bomb = procs(cg, [sys.executable, "-c", FORK_BOMB], stdout=subprocess.PIPE, text=True)
        line = bomb.stdout.readline().strip()
        assert line == "forked 7, then: Resource temporarily unavailable"  # 1 parent + 7
        assert cg.read().pids_current == 8
        assert len(cg.pids()) == 8


def test_cpu_shares_become_weight_and_cpuset_pins(procs):
    with cgroups.cgroup(name(), Limits(cpu_shares=512, cpuset_cpus="0")) as cg:
        if V == "v2":
            assert ctl(cg, "cpu", "cpu.weight", "") == str(cgroups.cpu_shares_to_weight(512))
        else:
            assert ctl(cg, "cpu", "", "cpu.shares") == "512"
        assert ctl(cg, "cpuset", "cpuset.cpus", "cpuset.cpus") == "0"
        p = procs(cg, SLEEP)
        execed(p, "sleep")
        status = text(f"/proc/{p.pid}/status")
        assert "Cpus_allowed_list:\t0\n" in status


def test_freeze_stops_the_clock_of_a_busy_process_and_thaw_restarts_it(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, BUSY)
        joined(cg, p)
        wait_until(lambda: cpu_ticks(p.pid) > 5)
        cg.freeze()
        assert cg.frozen()
        before = cpu_ticks(p.pid)
        time.sleep(0.3)
        assert cpu_ticks(p.pid) == before  # frozen: not a single tick more
        cg.thaw()
        assert not cg.frozen()
        wait_until(lambda: cpu_ticks(p.pid) > before + 5)


def test_kill_empties_the_cgroup_but_keeps_it(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, ["/bin/sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait"])
        wait_until(lambda: len(cg.pids()) == 4)
        cg.kill()
        assert cg.pids() == []
        assert p.wait(5) == -9
        assert cg.exists()


def test_kill_a_frozen_cgroup(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, BUSY)
        joined(cg, p)
        cg.freeze()
        cg.kill()
        assert cg.pids() == []
        assert p.wait(5) == -9


def test_update_limits_of_a_live_cgroup(procs):
    with cgroups.cgroup(name(), Limits(memory=64 * MiB, pids=10, cpus=0.5)) as cg:
        p = procs(cg, SLEEP)
        execed(p, "sleep")
        cg.apply(Limits(memory=128 * MiB, pids=20, cpus=1.5))
        assert ctl(cg, "memory", "memory.max", "memory.limit_in_bytes") == str(128 * MiB)
        assert ctl(cg, "pids", "pids.max", "pids.max") == "20"
        assert ctl(cg, "cpu", "cpu.max", "cpu.cfs_quota_us") in ("150000 100000", "150000")
        assert cg.read().memory_limit == 128 * MiB
        cg.apply(Limits(memory=-1, pids=0, cpus=0))  # back to unlimited
        assert cg.read().memory_limit is None
        assert ctl(cg, "pids", "pids.max", "pids.max") == "max"
        assert ctl(cg, "cpu", "cpu.max", "cpu.cfs_quota_us") in ("max 100000", "-1")
        assert p.poll() is None  # updating never disturbed the process


def test_memory_high_is_v2_only():
    if V == "v2":
        with cgroups.cgroup(name(), Limits(memory_high=32 * MiB)) as cg:
            assert ctl(cg, "memory", "memory.high", "") == str(32 * MiB)
    else:
        with pytest.raises(CgroupError, match=r"memory_high .* only on cgroup v2"):
            cgroups.cgroup(name(), Limits(memory_high=32 * MiB))


def test_a_limit_below_usage(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, [sys.executable, "-c", "import time; b = b'x' * (32 << 20); time.sleep(60)"])
        wait_until(lambda: (cg.read().memory_current or 0) > 32 * MiB, timeout=20)
        if V == "v1":
            # v1 refuses: it could not reclaim down to the new limit (no swap to push to).
            if _swap_active():
                pytest.skip("with swap on, v1 can push the memory out instead of refusing")
            with pytest.raises(CgroupError, match=r"memory\.limit_in_bytes .*raise the limit"):
                cg.apply(Limits(memory=4 * MiB))
            assert p.poll() is None
        else:
            # v2 accepts and enforces at once: what cannot be reclaimed is OOM-killed.
            cg.apply(Limits(memory=4 * MiB))
            assert p.wait(10) == -9
            assert cg.read().oom_kill == 1


def test_a_value_the_kernel_refuses_names_file_and_value():
    with pytest.raises(CgroupError, match=r"'99' for .*cpuset\.cpus .*cpus allowed here"):
        cgroups.cgroup(name(), Limits(cpuset_cpus="99"))


def test_a_missing_controller_is_named(monkeypatch):
    from containerlab.cgroups import fs, v2

    if V == "v2":
        real = v2._controllers
        monkeypatch.setattr(
            v2, "_controllers", lambda d, f="cgroup.controllers": real(d, f) - {"io"}
        )
        match = "controller io is not available.*leave that limit out"
    else:
        real_h = fs.hierarchies
        monkeypatch.setattr(
            fs, "hierarchies", lambda: [h for h in real_h() if "blkio" not in h.controllers]
        )
        match = "controller blkio is not mounted.*mount -t cgroup -o blkio"
    with pytest.raises(CgroupError, match=match):
        cgroups.cgroup(name(), Limits(io=[("8:0", MiB, MiB)]))


# --- readings -------------------------------------------------------------------------------
def test_readings_of_a_running_process(procs):
    with cgroups.cgroup(name()) as cg:
        p = procs(cg, [sys.executable, "-c", "import time; b = b'x' * (16 << 20); time.sleep(60)"])
        wait_until(lambda: (cg.read().memory_current or 0) > 16 * MiB, timeout=20)
        st = cg.read()
        kills = cg.oom_kills()
    assert st.pids_current == 1
    assert kills == 0
    assert st.memory_peak >= st.memory_current > 16 * MiB
    assert st.memory_limit is None
    assert st.cpu_usage_usec > 0
    assert st.oom_kill == 0
    assert p.wait(5) == -9
    if V == "v2":
        for psi in (st.cpu_pressure, st.memory_pressure, st.io_pressure):
            assert isinstance(psi, cgroups.Psi) and psi.some_avg10 >= 0


def test_psi_pressure_on_v2(procs):
    if V != "v2":
        pytest.skip("per-cgroup PSI (cpu/memory/io.pressure) exists only on cgroup v2")
    with cgroups.cgroup(name(), Limits(cpus=0.1)) as cg:
        procs(cg, BUSY)
        procs(cg, BUSY)
        time.sleep(1.0)
        st = cg.read()
    # two busy loops sharing a tenth of a core: most of the time one waits for the CPU
    assert st.cpu_pressure.some_total_usec > 0
    assert st.memory_pressure.full_avg10 is not None


def _disk_of(path: str) -> str | None:
    """major:minor of the whole disk holding ``path``'s filesystem, or None (9p, tmpfs...)."""
    st = os.stat(path)
    sys_dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.exists(sys_dev):
        return None
    real = os.path.realpath(sys_dev)
    if os.path.exists(f"{real}/partition"):  # io limits apply to whole disks
        real = os.path.dirname(real)
    return text(f"{real}/dev").strip()


def test_io_limit_and_io_stat(procs, tmp_path):
    disk = _disk_of(str(tmp_path))
    if disk is None:
        pytest.skip(f"{tmp_path} is not on a block disk (root over 9p?): no io to limit or count")
    with cgroups.cgroup(name(), Limits(io=[(disk, 8 * MiB, 4 * MiB)])) as cg:
        if V == "v2":
            line = ctl(cg, "io", "io.max", "")
            assert f"{disk} rbps={8 * MiB} wbps={4 * MiB}" in line
        else:
            assert ctl(cg, "blkio", "", "blkio.throttle.read_bps_device") == f"{disk} {8 * MiB}"
            assert ctl(cg, "blkio", "", "blkio.throttle.write_bps_device") == f"{disk} {4 * MiB}"
        # 1 MiB written past the page cache, from inside the cgroup: counted on the disk.
        out = tmp_path / "written"
        dd = ["dd", "if=/dev/zero", f"of={out}", "bs=64k", "count=16", "oflag=direct"]
        p = procs(cg, dd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert p.wait(20) == 0, p.stderr.read()
        io = {s.device: s for s in cg.read().io}
    print(f"io.stat of {disk}: {io.get(disk)}")
    assert io[disk].wbytes >= MiB


def test_v2_driver_on_any_cgroup2_mount(procs, monkeypatch):
    """The v2 mechanics that need no controller (freeze, kill, PSI) run on every machine.

    On the hybrid CI machine this drives the controller-less cgroup2 mount at
    /sys/fs/cgroup/unified, so the v2 driver is exercised here too; on v2 it is the real thing.
    """
    if not any(h.version == 2 for h in cgroups.hierarchies()):
        pytest.skip("no cgroup2 filesystem is mounted")
    monkeypatch.setenv("CONTAINERLAB_CGROUP_VERSION", "v2")
    with cgroups.cgroup(name()) as cg:
        assert cg.version == "v2"
        if not os.path.exists(f"{cg.path()}/cgroup.freeze"):
            pytest.skip("cgroup.freeze needs Linux 5.2")
        busy, sleeper = procs(cg, BUSY), procs(cg, SLEEP)
        joined(cg, busy)
        joined(cg, sleeper)
        wait_until(lambda: cpu_ticks(busy.pid) > 5)
        assert sorted(cg.pids()) == sorted([busy.pid, sleeper.pid])
        cg.freeze()
        before = cpu_ticks(busy.pid)
        time.sleep(0.3)
        assert cpu_ticks(busy.pid) == before
        cg.thaw()
        wait_until(lambda: cpu_ticks(busy.pid) > before)
        st = cg.read()
        assert st.cpu_usage_usec > 0
        assert isinstance(st.cpu_pressure, cgroups.Psi)
        cg.kill()  # cgroup.kill where the kernel has it (5.14), else SIGKILL each
        assert cg.pids() == []
        assert busy.wait(5) == sleeper.wait(5) == -9
        path = cg.path()
    assert not os.path.exists(path)

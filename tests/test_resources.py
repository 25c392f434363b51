"""Containers in their cgroups: limits from `run`, `update`, `stats`, `pause`, OOMKilled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from containerlab import cgroups
from containerlab.runtime import lifecycle

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")
HOG = 'x=$(head -c 200000000 /dev/zero | tr "\\0" x); echo survived'


def clab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, f"containerlab {' '.join(args)}: {res.stderr}"
    return res


def test_the_container_sees_its_cgroup_as_the_root_and_lives_in_it():
    res = clab("run", "--rm", "busybox", "cat", "/proc/self/cgroup")
    assert all(line.endswith(":/") for line in res.stdout.splitlines())
    clab("run", "-d", "--name", "cg1", "busybox", "sleep", "30")
    try:
        rec = lifecycle.get("cg1")
        name = rec.config["cgroup"]["name"]
        cg = cgroups.Cgroup.open(name)
        assert rec.state.pid in cg.pids()
        exec_pid = clab("exec", "cg1", "sh", "-c", "cat /proc/self/cgroup | head -1").stdout
        assert exec_pid.strip().endswith(":/")  # exec'd processes join it too
    finally:
        clab("rm", "-f", "cg1")
    assert not cg.exists()  # removed with the container


def test_memory_limit_oom_kill_is_reported_as_docker_does():
    res = clab("run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c", HOG, check=False)
    try:
        assert res.returncode == 137
        assert "survived" not in res.stdout
        out = clab(
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}} {{.HostConfig.Memory}}",
            "hog",
        ).stdout.split()
        assert out == ["True", "137", str(32 * 1024 * 1024)]
    finally:
        clab("rm", "hog")


def test_a_kill_is_not_an_oom_kill():
    clab("run", "-d", "--name", "nokill", "-m", "64m", "busybox", "sleep", "30")
    try:
        clab("kill", "nokill")
        assert clab("wait", "nokill").stdout.strip() == "137"
        assert clab("inspect", "-f", "{{.State.OOMKilled}}", "nokill").stdout.strip() == "False"
    finally:
        clab("rm", "-f", "nokill")


def test_pids_limit_stops_a_fork_bomb():
    script = "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done 2>&1; wait"
    res = clab("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", script, check=False)
    assert "can't fork" in res.stdout + res.stderr or "Resource temporarily" in (
        res.stdout + res.stderr
    )


def test_update_stats_pause_unpause():
    clab(
        "run", "-d", "--name", "busy", "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done"
    )
    try:
        rec = lifecycle.get("busy")
        cg = cgroups.Cgroup.open(rec.config["cgroup"]["name"])
        quota_file = "cpu.max" if cg.version == "v2" else "cpu.cfs_quota_us"
        quota = Path(cg.path("cpu"), quota_file)
        assert "50000" in quota.read_text()
        clab("update", "--cpus", "0.2", "--pids-limit", "50", "busy")
        assert "20000" in quota.read_text()
        fmt = "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"
        assert clab("inspect", "-f", fmt, "busy").stdout.split() == ["200000000", "50"]
        table = clab("stats", "--no-stream", "busy").stdout.splitlines()
        assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
        cpu = float(table[1].split()[2].rstrip("%"))
        assert 0 < cpu < 60  # limited to a fifth of a core (loosely: the machine is shared)
        clab("pause", "busy")
        assert "(Paused)" in clab("ps").stdout
        before = cg.read().cpu_usage_usec
        time.sleep(0.5)
        assert cg.read().cpu_usage_usec - before < 20_000  # frozen: no CPU at all
        res = clab("pause", "busy", check=False)
        assert res.returncode == 1 and "already paused" in res.stderr
        clab("unpause", "busy")
        assert "Up" in clab("ps").stdout and "(Paused)" not in clab("ps").stdout
    finally:
        clab("rm", "-f", "busy")


def test_bad_limits_are_refused_before_anything_runs(clab_root):
    res = clab("run", "--rm", "--cpus", "lots", "busybox", "true", check=False)
    assert res.returncode == 125 and "cpus" in res.stderr
    res = clab("run", "--rm", "-m", "12x", "busybox", "true", check=False)
    assert res.returncode == 125
    assert clab("ps", "-a", "-q").stdout == ""


def test_only_the_containers_processes_count_against_its_limits():
    # The launcher joins the cgroup to fork PID 1 inside, then leaves: --pids-limit 4 is
    # sh plus three sleeps, as in Docker.
    script = "for i in 1 2 3 4 5 6; do sleep 2 & echo started $i; done 2>/dev/null; wait"
    res = clab("run", "--rm", "--pids-limit", "4", "busybox", "sh", "-c", script, check=False)
    assert res.stdout.split().count("started") == 3
    clab("run", "-d", "--name", "alone", "busybox", "sleep", "30")
    try:
        rec = lifecycle.get("alone")
        assert cgroups.Cgroup.open(rec.config["cgroup"]["name"]).pids() == [rec.state.pid]
    finally:
        clab("rm", "-f", "alone")

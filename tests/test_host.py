"""Host checks: parsing is pure logic, verdicts are read from this machine."""

from __future__ import annotations

from containerlab import host

V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
HYBRID = (
    "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
)
V1 = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"


def test_cgroup_version_parsing():
    assert host.cgroup_version(V2) == "v2"
    assert host.cgroup_version(HYBRID) == "hybrid"
    assert host.cgroup_version(V1) == "v1"
    assert host.cgroup_version("") == "none"


def test_kernel_version_parsing():
    assert host.kernel_version("6.8.0-45-generic") == (6, 8)
    assert host.kernel_version("5.10.0-rc1") == (5, 10)


def test_this_machine_is_ready():
    checks = {c.name: c for c in host.checks()}
    assert checks["root"].ok and checks["overlayfs"].ok and checks["busybox"].ok
    assert checks["cgroups"].detail in ("v2", "hybrid", "v1")
    assert host.report().endswith("verdict: ready")


def test_a_missing_feature_gets_its_fix():
    report = host.report([host.Check("overlayfs", False, "missing", "modprobe overlay")])
    assert "MISSING" in report and "fix: modprobe overlay" in report
    assert report.endswith("verdict: not ready (overlayfs)")

"""The machine containerlab runs on: which kernel features are there, and what to do if not.

Used by ``containerlab info`` and the welcome notebook. Each check returns a verdict and,
when something is missing, the fix, so a learner alone with a VM is never stuck.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One verdict about the machine."""

    name: str  # what was checked
    ok: bool  # whether containerlab can use it
    detail: str  # what was found
    fix: str = ""  # what to do when not ok
    required: bool = True  # False: only some notebooks need it


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel, from a release string like ``6.8.0-45-generic``."""
    release = release or os.uname().release
    parts = release.split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def cgroup_version(mounts_text: str | None = None) -> str:
    """``"v2"`` (unified, what every current distribution uses), ``"hybrid"`` or ``"v1"``.

    Hybrid means v1 controllers plus a cgroup2 mount next to them (older systemd setups and
    this project's CI machine).
    """
    if mounts_text is None:
        with open("/proc/self/mounts") as f:
            mounts_text = f.read()
    types = {}
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] in ("cgroup", "cgroup2"):
            types.setdefault(fields[2], []).append(fields[1])
    if "cgroup2" in types and "/sys/fs/cgroup" in types["cgroup2"]:
        return "v2"
    if "cgroup" in types:
        return "hybrid" if "cgroup2" in types else "v1"
    return "v2" if "cgroup2" in types else "none"


def filesystems(text: str | None = None) -> set[str]:
    """Filesystem types the kernel can mount now (from /proc/filesystems)."""
    if text is None:
        with open("/proc/filesystems") as f:
            text = f.read()
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def checks() -> list[Check]:
    """Every check, in the order the welcome notebook explains them."""
    out = []
    major, minor = kernel_version()
    out.append(
        Check(
            "kernel",
            (major, minor) >= (5, 6),
            os.uname().release,
            "containerlab needs Linux >= 5.6 (time namespaces); use Ubuntu 24.04 or Debian 12",
        )
    )
    root = os.geteuid() == 0
    out.append(
        Check(
            "root",
            root,
            "uid 0" if root else f"uid {os.geteuid()}",
            "namespaces and mounts need root: run with sudo, or use the lab's "
            "'containerlab (root)' kernel",
        )
    )
    cg = cgroup_version()
    out.append(
        Check(
            "cgroups",
            cg in ("v2", "hybrid", "v1"),
            cg,
            "no cgroup filesystem is mounted: mount -t cgroup2 none /sys/fs/cgroup",
        )
    )
    fs = filesystems()
    out.append(
        Check(
            "overlayfs",
            "overlay" in fs,
            "available" if "overlay" in fs else "missing",
            "modprobe overlay",
        )
    )
    max_userns = _read_int("/proc/sys/user/max_user_namespaces")
    restricted = _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1
    detail = f"max_user_namespaces={max_userns}"
    if restricted:
        detail += " (AppArmor restricts them for unprivileged users; root is unaffected)"
    out.append(
        Check(
            "user namespaces", bool(max_userns), detail, "sysctl -w user.max_user_namespaces=15000"
        )
    )
    has_time = os.path.exists("/proc/self/ns/time")
    out.append(
        Check(
            "time namespace",
            has_time,
            "available" if has_time else "missing",
            "needs Linux >= 5.6 with CONFIG_TIME_NS",
            required=False,
        )
    )
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
    out.append(
        Check(
            "busybox",
            busybox is not None,
            busybox or "missing",
            "apt-get install busybox-static (scripts/setup.sh does it)",
        )
    )
    return out


def report(items: list[Check] | None = None) -> str:
    """The checks as a small table, with a verdict line at the end."""
    items = checks() if items is None else items
    lines = []
    for c in items:
        mark = "ok " if c.ok else ("MISSING" if c.required else "optional")
        line = f"{mark:8} {c.name:16} {c.detail}"
        if not c.ok:
            line += f"\n{'':8} {'':16} fix: {c.fix}"
        lines.append(line)
    bad = [c.name for c in items if c.required and not c.ok]
    lines.append("verdict: ready" if not bad else f"verdict: not ready ({', '.join(bad)})")
    return "\n".join(lines)

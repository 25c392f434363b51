#!/usr/bin/env python3
"""Benchmark: how long a container takes to start and stop, and what an idle one costs.

    sudo .venv/bin/python scripts/bench_runtime.py [--runs 20]

Side by side in one run, on the same busybox root filesystem (the busybox image's layer):

- ``containerlab run --rm busybox true`` (the CLI, as a user types it), and the same with
  cgroup limits (``-m 64m --cpus 1 --pids-limit 100``): what configuring them costs;
- ``runc run`` and ``crun run`` of an OCI bundle over that rootfs (``runc spec``, with the
  terminal off and no network namespace changes), when installed;
- ``podman run --rm`` and ``docker run --rm`` when installed and able to run here.

Then the memory an idle detached container holds on the host: the proportional set size
(PSS, from /proc/PID/smaps_rollup) of its supervisor, its launcher and its PID 1, next to
conmon (podman) or containerd-shim (docker) measured the same way when those run here.

Nothing is asserted: performance is reported, never a timed test. Runs alternate between
the tools, and medians are reported with the minimum, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "containerlab")


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - t0


def make_bundle(rootfs: Path, bundle: Path) -> None:
    """An OCI bundle for runc/crun: ``runc spec``'s default config, running ``true``."""
    bundle.mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config))


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_runtime.py needs root (sudo)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="clab-bench-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    from containerlab.image import base
    from containerlab.image.store import Store

    store = Store()
    base.ensure_base_image(store)
    (rootfs,) = store.layer_dirs(store.image("busybox"))
    tools: dict[str, list[str]] = {
        "containerlab run --rm": [CLI, "run", "--rm", "busybox", "true"],
        # The same with cgroup limits set: what configuring the cgroup adds to a start.
        "containerlab run --rm -m 64m --cpus 1 --pids-limit 100": [
            CLI,
            "run",
            "--rm",
            "-m",
            "64m",
            "--cpus",
            "1",
            "--pids-limit",
            "100",
            "busybox",
            "true",
        ],
    }
    if shutil.which("runc"):
        make_bundle(rootfs, work / "runc")
        tools["runc run"] = [
            "runc",
            "--root",
            str(work / "runc-state"),
            "run",
            "-b",
            str(work / "runc"),
            "bench",
        ]
    if shutil.which("crun"):
        make_bundle(rootfs, work / "crun")
        # crun refuses this host's v1/v2 hybrid cgroups unless the cgroup2 mount is hidden.
        tools["crun run"] = [
            "unshare",
            "-m",
            "sh",
            "-c",
            "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root "
            f"{work}/crun-state run -b {work}/crun bench",
        ]
    for name in ("podman", "docker"):
        if (
            shutil.which(name)
            and subprocess.run([name, "info"], capture_output=True).returncode == 0
        ):
            tools[f"{name} run --rm"] = [
                name,
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "true",
            ]
    times: dict[str, list[float]] = {t: [] for t in tools}
    try:
        for cmd in tools.values():  # one warm-up each
            timed(cmd)
        for i in range(args.runs):
            order = list(tools.items())
            for t, cmd in order if i % 2 == 0 else reversed(order):
                times[t].append(timed(cmd))

        # Memory of an idle detached container.
        cid = subprocess.run(
            [CLI, "run", "-d", "busybox", "sleep", "300"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        time.sleep(0.5)
        from containerlab.runtime import state

        rec = state.load(cid)
        sup = rec.state.supervisor_pid
        procs = tree(sup)
        pss = {p: pss_kb(p) for p in procs}
        names = {}
        for p in procs:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            names[p] = " ".join(a.decode() for a in argv[:4] if a).replace(
                str(Path(sys.executable).parent) + "/", ""
            )
        names[sup] = "supervisor: " + names[sup]
        subprocess.run([CLI, "rm", "-f", cid], check=True, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| command | median | min |")
    print("|---|---|---|")
    for t, xs in times.items():
        print(f"| {t} | {statistics.median(xs) * 1000:.0f} ms | {min(xs) * 1000:.0f} ms |")
    print()
    print("memory of one idle detached container (`run -d busybox sleep 300`), PSS:")
    for p in procs:
        print(f"  {names[p][:60]:60} {pss[p] / 1024:.1f} MiB")
    print(f"  {'total':60} {sum(pss.values()) / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

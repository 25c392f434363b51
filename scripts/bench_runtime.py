#!/usr/bin/env python3
"""Benchmark: how long a container takes to start and stop, and what an idle one costs.

    sudo .venv/bin/python scripts/bench_runtime.py [--runs 20] [--install]

Side by side in one run, on the same busybox image (the project's offline one: its layer
for runc/crun, `containerlab save` loaded into podman and docker; nothing is pulled):

- ``containerlab run --rm --network none busybox true`` (the CLI, as a user types it), and
  the same with cgroup limits (``-m 64m --cpus 1 --pids-limit 100``): what they cost;
- ``runc run`` and ``crun run`` of an OCI bundle over that rootfs (``runc spec``: the
  terminal off, a new network namespace with only lo, as ``--network none``);
- ``podman run --rm --network none`` (crun, cgroupfs) and ``docker run --rm --network
  none`` (a private dockerd, runc) when installed: see benchlib.py for how they run apart
  from the host, in a private mount and network namespace. Their rows include entering it
  (``nsenter``), which has its own row.

- the floor: ``floor_run.py``, the kernel steps of that start (cgroups, namespaces, overlay,
  pivot_root, exec) in forty lines of Python started with ``-S``, nothing recorded or
  checked; and ``python -c pass``. What containerlab takes above the floor is its own.

All rows use ``--network none``: the cost of the network is scripts/bench_network.py's.

Then the memory an idle detached container (``run -d ... sleep 300``) holds on the host:
the proportional set size (PSS, /proc/PID/smaps_rollup) of containerlab's supervisor and
PID 1 (the supervisor's process tree: its launcher has exited), next to podman's conmon +
PID 1 and docker's containerd-shim + PID 1
(dockerd and containerd, shared by all containers, listed apart).

Needs root, runc and crun (setup.sh installs them); podman and docker are optional:
``--install`` installs the missing ones (``apt-get install -y --no-install-recommends
podman docker.io``), else their rows say how. Nothing is asserted: performance is
reported, never a timed test. Runs alternate between the tools, and medians are reported
with the minimum, since the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib as bl


def make_bundle(rootfs: Path, bundle: Path) -> None:
    """An OCI bundle for runc/crun: ``runc spec``'s default config, running ``true``."""
    bundle.mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config))


def idle_memory(engines: dict[str, bl.Engine], work: Path) -> list[tuple[str, list]]:
    """Per tool: [(label, pid)] of the processes one idle detached container holds."""
    from containerlab.runtime import state

    out: list[tuple[str, list]] = []
    cid = subprocess.run(
        [bl.CLI, "run", "-d", "--network", "none", "busybox", "sleep", "300"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        time.sleep(0.5)
        sup = state.load(cid).state.supervisor_pid
        procs = bl.tree(sup)
        rows = [(("supervisor: " if p == sup else "") + bl.cmdline(p), p) for p in procs]
        out.append(("containerlab", [(label, bl.pss_kb(p)) for label, p in rows]))
    finally:
        subprocess.run([bl.CLI, "rm", "-f", cid], capture_output=True)
    for name, e in engines.items():
        cid = e.out("run", "-d", "--pull", "never", "--network", "none", "busybox", "sleep", "300")
        try:
            time.sleep(0.5)
            pid1 = int(e.out("inspect", "-f", "{{.State.Pid}}", cid))
            if name == "podman":
                keeper = int(e.out("inspect", "-f", "{{.State.ConmonPid}}", cid))
            else:
                keeper = bl.parent(pid1)  # containerd-shim-runc-v2
            rows = [(f"{bl.cmdline(keeper, 1)} (per container)", keeper), (bl.cmdline(pid1), pid1)]
            if name == "docker":
                daemon = int((work / "docker" / "dockerd.pid").read_text())
                shared = [daemon, *(p for p in bl.tree(daemon) if bl.cmdline(p, 1) == "containerd")]
                rows += [(f"{bl.cmdline(p, 1)} (shared by all containers)", p) for p in shared]
            out.append((name, [(label, bl.pss_kb(p)) for label, p in rows]))
        finally:
            subprocess.run(e("rm", "-f", "-t", "0", cid), capture_output=True, env=e.env)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--install", action="store_true", help="apt-get install missing tools")
    ap.add_argument("--podman-runtime", default="crun", choices=["crun", "runc"])
    args = ap.parse_args()
    bl.need_root("bench_runtime.py")
    bl.become_subreaper()  # orphaned supervisors, conmon, shims: reaped here
    work = Path(tempfile.mkdtemp(prefix="clab-bench-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    bl.python_as_installed(work)
    from containerlab.image import base
    from containerlab.image.store import Store

    store = Store()
    base.ensure_base_image(store)
    (rootfs,) = store.layer_dirs(store.image("busybox"))
    clab_run = [bl.CLI, "run", "--rm", "--network", "none"]
    tools: dict[str, Callable[[], object]] = {
        "containerlab run --rm --network none": bl.command([*clab_run, "busybox", "true"]),
        # The same with cgroup limits set: what configuring the cgroup adds to a start.
        "containerlab run --rm --network none -m 64m --cpus 1 --pids-limit 100": bl.command(
            [*clab_run, "-m", "64m", "--cpus", "1", "--pids-limit", "100", "busybox", "true"]
        ),
    }
    # The floor: the same kernel steps in as little Python as can do them (see floor_run.py);
    # and the interpreter start alone, which every Python row pays once.
    (work / "floor").mkdir()
    floor = [sys.executable, "-S", "-E", str(Path(__file__).with_name("floor_run.py"))]
    tools["floor: its kernel steps alone, in minimal Python (floor_run.py)"] = bl.command(
        [*floor, str(rootfs), str(work / "floor")]
    )
    tools["python -c pass (the interpreter's start)"] = bl.command([sys.executable, "-c", "pass"])
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # last, after the engines
        stack.callback(bl.reap_orphans, wait=5)  # stopping supervisors, conmon, shims
        for runtime in ("runc", "crun"):
            why = bl.missing([runtime, "runc"], args.install)  # runc spec writes the bundle
            if why:
                skipped[f"{runtime} run"] = why
                continue
            make_bundle(rootfs, work / runtime)
            run = [runtime, "--root", str(work / f"{runtime}-state"), "run"]
            run += ["-b", str(work / runtime), "bench"]
            if runtime == "crun":
                # crun refuses this host's v1/v2 hybrid cgroups unless the cgroup2 mount at
                # /sys/fs/cgroup/unified is hidden (in a mount namespace of its own).
                run = ["unshare", "-m", "sh", "-c", "umount /sys/fs/cgroup/unified 2>/dev/null;"
                       " exec " + " ".join(run)]  # fmt: skip
            tools[f"{runtime} run"] = bl.command(run)
        sandbox, engines, why_not = bl.engines(
            stack, work, install=args.install, podman_runtime=args.podman_runtime
        )
        for name, why in why_not.items():
            skipped[f"{name} run --rm --network none"] = why
        if sandbox:
            tools["nsenter into the sandbox, `true` (included in the rows below)"] = bl.command(
                [*sandbox.prefix, "true"]
            )
        for name, e in engines.items():
            tools[f"{name} run --rm --network none ({e.version})"] = bl.command(
                e("run", "--rm", "--pull", "never", "--network", "none", "busybox", "true"), e.env
            )
        times = bl.alternate(tools, args.runs)
        memory = idle_memory(engines, work)

    print(f"`run --rm busybox true`, {args.runs} runs each, interleaved\n")
    bl.print_table(times, skipped)
    print()
    print("memory of one idle detached container (`run -d --network none busybox sleep 300`),")
    print("PSS:\n")
    print("| tool | process | PSS |")
    print("|---|---|---|")
    for tool, rows in memory:
        per_container = 0
        for label, kb in rows:
            print(f"| {tool} | {label[:70]} | {kb / 1024:.1f} MiB |")
            if "shared by all" not in label:
                per_container += kb
        print(f"| {tool} | **per container** | **{per_container / 1024:.1f} MiB** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

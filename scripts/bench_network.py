#!/usr/bin/env python3
"""Benchmark: what joining the default bridge network adds to a container's start.

    sudo .venv/bin/python scripts/bench_network.py [--runs 20] [--install]

Side by side in one run, ``run --rm busybox true`` on the default bridge network and with
``--network none`` (only a loopback), for:

- ``containerlab run`` (its default network "bridge": the clab0 bridge, a veth pair, an
  address from the IPAM pool, /etc/hosts and resolv.conf, NAT rules in nft);
- ``podman run --network bridge`` (CNI: cni-podman0, host-local IPAM, iptables) with a
  private storage root, when installed;
- ``docker run`` (docker0 through libnetwork, iptables) against a private dockerd, when
  installed (``--install`` installs podman and docker.io).

All of them run inside one private mount and network namespace (see benchlib.py), entered
with ``nsenter`` (its own cost is a row): there the bridges, veths and firewall rules of
all three live apart from the host's, on a network with no way out (only lo), so no
container can reach an outside address, and nothing is left behind: the namespace goes
with them. containerlab runs there too, so that its clab0 never meets the one the
project's tests (maybe running at the same time) make on the host, and so that all three
set up their network under the same conditions.

Nothing is asserted: performance is reported, never a timed test. Runs alternate between
the tools; medians are reported with the minimum, since the machine is shared. The second
table is the difference of medians: what the bridge network costs each tool.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import benchlib as bl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--install", action="store_true", help="apt-get install missing tools")
    args = ap.parse_args()
    bl.need_root("bench_network.py")
    bl.become_subreaper()  # orphaned supervisors, conmon, shims: reaped here
    help_text = subprocess.run([bl.CLI, "run", "--help"], capture_output=True, text=True).stdout
    if "--network" not in help_text:
        print("this containerlab has no `run --network`: nothing to compare", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="clab-bench-net-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    bl.python_as_installed(work)
    from containerlab.image import base
    from containerlab.image.store import Store

    base.ensure_base_image(Store())
    # (tool, network) -> the command, timed in alternation
    tools: dict[str, Callable[[], object]] = {}
    pairs: dict[str, tuple[str, str]] = {}  # tool -> (its bridge row, its none row)
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # last, after the sandbox
        stack.callback(bl.reap_orphans, wait=5)  # stopping supervisors, conmon, shims
        sandbox, engines, why_not = bl.engines(stack, work, install=args.install)
        for name, why in why_not.items():
            skipped[f"{name} run --rm"] = why
        if sandbox is None:  # no engine here: containerlab still gets its sandbox
            sandbox = stack.enter_context(bl.Sandbox())
        tools["nsenter into the sandbox, `true` (included in every row)"] = bl.command(
            [*sandbox.prefix, "true"]
        )
        clab = [*sandbox.prefix, bl.CLI, "run", "--rm"]
        rows = {"containerlab": (clab, [], None)}
        for name, e in engines.items():
            rows[f"{name} ({e.version})"] = (e("run", "--rm", "--pull", "never"), [], e.env)
        if "podman" in engines:  # root podman's default is bridge too; say it as Docker does
            argv, _, env = rows[f"podman ({engines['podman'].version})"]
            rows[f"podman ({engines['podman'].version})"] = (argv, ["--network", "bridge"], env)
        for tool, (argv, bridge_flags, env) in rows.items():
            short = tool.split(" (")[0]
            on_bridge = f"{short} run --rm {' '.join(bridge_flags) or '(default bridge)'}".strip()
            on_none = f"{short} run --rm --network none"
            tools[on_bridge] = bl.command([*argv, *bridge_flags, "busybox", "true"], env)
            tools[on_none] = bl.command([*argv, "--network", "none", "busybox", "true"], env)
            pairs[tool] = (on_bridge, on_none)
        times = bl.alternate(tools, args.runs)

    print(f"`run --rm busybox true`, bridge vs no network, {args.runs} runs each, interleaved\n")
    bl.print_table(times, skipped)
    print("\nwhat the bridge network adds (difference of medians)\n")
    print("| tool | bridge | none | bridge - none |")
    print("|---|---|---|---|")
    for tool, (on_bridge, on_none) in pairs.items():
        b, n = statistics.median(times[on_bridge]), statistics.median(times[on_none])
        print(f"| {tool} | {bl.ms(b)} | {bl.ms(n)} | {(b - n) * 1000:+.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

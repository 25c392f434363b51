#!/usr/bin/env python3
"""Benchmark: building a small image, without cache and fully cached.

    sudo .venv/bin/python scripts/bench_build.py [--runs 10]

The Dockerfile has three steps (FROM busybox, a RUN writing a file, a CMD). Side by side in
one run:

- ``containerlab build`` (the CLI, as a user types it; Python's start-up included, with the
  package's bytecode cached as an installed package has it), and the
  same build through ``builder.build`` in this process (what a notebook cell pays);
- ``docker build`` (BuildKit) and ``podman build`` when installed, working, and holding a
  ``busybox`` image already (nothing is pulled from the internet).

Each tool builds ``--no-cache`` N times, then N times with its cache warm. Nothing is
asserted: the table gives median and minimum (the machine is shared), and the ratio
cached/uncached (goal: under 10%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CLI = str(Path(sys.executable).parent / "containerlab")
DOCKERFILE = 'FROM busybox\nRUN echo built > /built.txt\nCMD ["cat", "/built.txt"]\n'


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def command(cmd: list[str], env: dict[str, str] | None = None) -> Callable[[], object]:
    return lambda: subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def usable(tool: str) -> str | None:
    """None when ``tool`` can build here, else why it is skipped."""
    if not shutil.which(tool):
        return "not installed"
    if subprocess.run([tool, "info"], capture_output=True).returncode != 0:
        return f"`{tool} info` fails (no daemon or no permission)"
    if subprocess.run([tool, "image", "inspect", "busybox"], capture_output=True).returncode:
        return "no local busybox image (this benchmark never pulls from the internet)"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_build.py needs root (sudo)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="clab-bench-build-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    ctx = work / "ctx"
    ctx.mkdir()
    # The CLI runs as installed: with compiled bytecode (this machine's environment may set
    # PYTHONDONTWRITEBYTECODE, which makes every run compile the package again: ~150 ms).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    (ctx / "Dockerfile").write_text(DOCKERFILE)

    from containerlab.build import builder
    from containerlab.image import base
    from containerlab.image.store import Store

    base.ensure_base_image(Store())

    def in_process(no_cache: bool) -> Callable[[], object]:
        return lambda: builder.build(
            ctx, tags=("bench:api",), no_cache=no_cache, out=lambda _line: None
        )

    tools: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "containerlab build": (
            command([CLI, "build", "-q", "--no-cache", "-t", "bench:cli", str(ctx)]),
            command([CLI, "build", "-q", "-t", "bench:cli", str(ctx)]),
        ),
        "builder.build (in process)": (in_process(True), in_process(False)),
    }
    skipped: dict[str, str] = {}
    docker_env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    for tool, env in (("docker", docker_env), ("podman", None)):
        why = usable(tool)
        if why:
            skipped[f"{tool} build"] = why
            continue
        tag = "clab-bench-build:latest"
        tools[f"{tool} build"] = (
            command([tool, "build", "-q", "--no-cache", "-t", tag, str(ctx)], env),
            command([tool, "build", "-q", "-t", tag, str(ctx)], env),
        )

    times: dict[str, dict[str, list[float]]] = {t: {"uncached": [], "cached": []} for t in tools}
    try:
        for uncached, cached in tools.values():  # warm-up: base image unpacked, caches filled
            uncached()
            cached()
        for kind, pick in (("uncached", 0), ("cached", 1)):
            for i in range(args.runs):
                order = list(tools.items())
                for name, fns in order if i % 2 == 0 else reversed(order):
                    times[name][kind].append(timed(fns[pick]))
    finally:
        for tool in ("docker", "podman"):
            if f"{tool} build" in tools:
                subprocess.run([tool, "rmi", "-f", "clab-bench-build:latest"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"3-step Dockerfile (FROM busybox, RUN, CMD), {args.runs} runs each\n")
    print(
        "| tool | uncached median | uncached min | cached median | cached min | cached/uncached |"
    )
    print("|---|---|---|---|---|---|")
    for name, kinds in times.items():
        u, c = kinds["uncached"], kinds["cached"]
        ratio = statistics.median(c) / statistics.median(u)
        print(
            f"| {name} | {statistics.median(u) * 1000:.0f} ms | {min(u) * 1000:.0f} ms "
            f"| {statistics.median(c) * 1000:.0f} ms | {min(c) * 1000:.0f} ms | {ratio:.0%} |"
        )
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

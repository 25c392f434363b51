#!/usr/bin/env python3
"""Benchmark: building a small image, without cache and fully cached.

    sudo .venv/bin/python scripts/bench_build.py [--runs 10] [--install]

The Dockerfile has three steps (FROM busybox, a RUN writing a file, a CMD). Side by side in
one run:

- ``containerlab build`` (the CLI, as a user types it; Python's start-up included, with the
  package's bytecode cached as an installed package has it), and the same build through
  ``builder.build`` in this process (what a notebook cell pays);
- ``docker build`` with BuildKit (``DOCKER_BUILDKIT=1``; a docker CLI with buildx, else
  Debian's 20.10 CLI /usr/bin/docker, whose BuildKit is built in: a 23+ CLI without buildx
  refuses) against a private dockerd, and ``podman build`` (``--layers``, its default)
  with a private storage root, when installed (``--install`` installs them). Both run in
  a private mount and network namespace (see benchlib.py) and build FROM the project's
  offline busybox image, loaded from ``containerlab save``: nothing is pulled.

Each tool builds ``--no-cache`` N times, then N times with its cache warm. Nothing is
asserted: the table gives median and minimum (the machine is shared), and the ratio
cached/uncached (goal: under 10%). Below the table: ``python -c pass``, the interpreter's
start, against the CLI's uncached build: a floor under any cached CLI build's ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import benchlib as bl

DOCKERFILE = 'FROM busybox\nRUN echo built > /built.txt\nCMD ["cat", "/built.txt"]\n'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--install", action="store_true", help="apt-get install missing tools")
    args = ap.parse_args()
    bl.need_root("bench_build.py")
    bl.become_subreaper()  # orphaned supervisors, conmon, shims: reaped here
    work = Path(tempfile.mkdtemp(prefix="clab-bench-build-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    ctx = work / "ctx"
    ctx.mkdir()
    bl.python_as_installed(work)
    (ctx / "Dockerfile").write_text(DOCKERFILE)

    from containerlab.build import builder
    from containerlab.image import base
    from containerlab.image.store import Store

    base.ensure_base_image(Store())

    def in_process(no_cache: bool) -> Callable[[], object]:
        return lambda: builder.build(
            ctx, tags=("bench:api",), no_cache=no_cache, out=lambda _line: None
        )

    cli = [bl.CLI, "build", "-q", "-t", "bench:cli", str(ctx)]
    tools: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "containerlab build": (bl.command([*cli[:3], "--no-cache", *cli[3:]]), bl.command(cli)),
        "builder.build (in process)": (in_process(True), in_process(False)),
    }
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # last, after the engines
        stack.callback(bl.reap_orphans, wait=5)  # stopping supervisors, conmon, shims
        _sandbox, engines, why_not = bl.engines(stack, work, install=args.install)
        for name, why in why_not.items():
            skipped[f"{name} build"] = why
        tag = "clab-bench-build:latest"
        if "docker" in engines:
            e = engines["docker"]
            if e.build_argv is None:
                skipped["docker build"] = "no docker CLI with BuildKit (install docker-buildx)"
            else:
                env = {**e.env, "DOCKER_BUILDKIT": "1"}
                argv = [*e.build_argv, "build", "-q", "-t", tag, str(ctx)]
                tools[f"docker build, BuildKit ({e.version})"] = (
                    bl.command([*argv[:-1], "--no-cache", argv[-1]], env),
                    bl.command(argv, env),
                )
        if "podman" in engines:
            e = engines["podman"]
            argv = e("build", "-q", "--pull=never", "-t", tag, str(ctx))
            tools[f"podman build ({e.version})"] = (
                bl.command([*argv[:-1], "--no-cache", argv[-1]], e.env),
                bl.command(argv, e.env),
            )
        # warm-up: base image unpacked, caches filled (alternate's own warm-up is the same)
        times = {
            kind: bl.alternate({name: fns[pick] for name, fns in tools.items()}, args.runs)
            for kind, pick in (("uncached", 0), ("cached", 1))
        }
        # The least any `containerlab build` can take, cached or not: the interpreter's start.
        start = bl.alternate({"python": bl.command([sys.executable, "-c", "pass"])}, args.runs)

    print(f"3-step Dockerfile (FROM busybox, RUN, CMD), {args.runs} runs each\n")
    print(
        "| tool | uncached median | uncached min | cached median | cached min | cached/uncached |"
    )
    print("|---|---|---|---|---|---|")
    for name in tools:
        u, c = times["uncached"][name], times["cached"][name]
        ratio = statistics.median(c) / statistics.median(u)
        print(
            f"| {name} | {bl.ms(statistics.median(u))} | {bl.ms(min(u))} "
            f"| {bl.ms(statistics.median(c))} | {bl.ms(min(c))} | {ratio:.0%} |"
        )
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why} | | | | |")
    python = statistics.median(start["python"])
    uncached = statistics.median(times["uncached"]["containerlab build"])
    print(
        f"\n`python -c pass` (the interpreter's start, which every `containerlab build` pays): "
        f"{bl.ms(python)} median, {python / uncached:.0%} of the CLI's uncached build"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The resource verbs over cgroups: update, stats, pause, unpause."""

from __future__ import annotations

import argparse
import sys
import time

from containerlab.cli.containers import _each
from containerlab.cli.run import limits_from, resource_flags


def cmd_update(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from containerlab.runtime import lifecycle

    limits = limits_from(args)
    if limits is None:
        print(
            "containerlab: update needs at least one limit (--memory, --cpus, ...)", file=sys.stderr
        )
        return 125
    changes = {k: v for k, v in asdict(limits).items() if v not in (None, ())}
    return _each(args.containers, lambda n: (lifecycle.update(n, **changes), n)[1])


def cmd_pause(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.pause(n), n)[1])


def cmd_unpause(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.unpause(n), n)[1])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n:.0f}B"
        n /= 1024
    return f"{n:.1f}GiB"


def stats_rows(names: list[str], previous: dict) -> list[list[str]]:
    """One `docker stats` row per container; CPU % from the change since ``previous``."""
    import os

    from containerlab.errors import ContainerlabError
    from containerlab.runtime import lifecycle, state

    records = [lifecycle.get(n) for n in names] if names else state.list_records(all_states=False)
    rows = []
    for rec in records:
        try:
            s = lifecycle.stats(rec.id)
        except ContainerlabError:
            continue
        before = previous.get(rec.id)
        cpu = 0.0
        if before is not None and s.cpu_usage_usec is not None and s.taken_at > before.taken_at:
            used = (s.cpu_usage_usec - (before.cpu_usage_usec or 0)) / 1e6
            cpu = 100.0 * used / (s.taken_at - before.taken_at)
        previous[rec.id] = s
        limit = s.memory_limit or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = s.memory_current or 0
        rows.append(
            [
                rec.short_id,
                rec.name,
                f"{cpu:.2f}%",
                f"{_human(mem)} / {_human(limit)}",
                f"{100.0 * mem / limit:.2f}%",
                str(s.pids_current or 0),
            ]
        )
    return rows


def cmd_stats(args: argparse.Namespace) -> int:
    previous: dict = {}
    head = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
    stats_rows(args.containers, previous)  # a first reading: CPU % needs two
    while True:
        time.sleep(0.5 if args.no_stream else 1.0)
        rows = [head, *stats_rows(args.containers, previous)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        text = "\n".join(
            "   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )
        if args.no_stream:
            print(text)
            return 0
        print("\033[2J\033[H" + text, flush=True)  # clear the screen, as docker stats does


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "update",
        help="change the limits of containers",
        description="Change cgroup limits; running containers feel them at once.",
    )
    resource_flags(p)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_update)
    p = sub.add_parser(
        "stats",
        help="live CPU, memory and pids use of containers",
        description="Show containers' resource use (Ctrl-C to stop).",
    )
    p.add_argument("--no-stream", action="store_true", help="one reading, then exit")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_stats)
    for verb, func, text in (
        ("pause", cmd_pause, "freeze every process of containers"),
        ("unpause", cmd_unpause, "thaw paused containers"),
    ):
        p = sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=func)

"""The container verbs: start, attach, ps, stop, kill, restart, rm, logs, wait, top, rename, and
``system prune``. Each is a few lines over ``runtime.lifecycle``, which a notebook can call
the same way."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from containerlab.cli.common import detach_keys_flag, template
from containerlab.errors import ContainerlabError
from containerlab.runtime.status import human_duration, seconds_since, status_text


def _each(names: list[str], action) -> int:
    """Apply ``action`` to every name; Docker prints each success and keeps going on errors."""
    status = 0
    for name in names:
        try:
            out = action(name)
            if out is not None:
                print(out)
        except ContainerlabError as e:
            print(f"containerlab: {e}", file=sys.stderr)
            status = 1
    return status


def ports_column(rec) -> str:
    from containerlab.runtime import networking

    return networking.ports_column(rec)


def ps_row(rec) -> dict[str, Any]:
    cmd = " ".join(rec.config["argv"])
    return {
        "ID": rec.short_id,
        "Image": rec.config.get("image", ""),
        "Command": json.dumps(cmd if len(cmd) <= 20 else cmd[:19] + "…", ensure_ascii=False),
        "CreatedAt": rec.config.get("created", ""),
        "RunningFor": human_duration(seconds_since(rec.config.get("created", ""))) + " ago",
        "Status": status_text(rec),
        "State": rec.state.status,
        "Names": rec.name,
        "Ports": ports_column(rec),
    }


def cmd_ps(args: argparse.Namespace) -> int:
    from containerlab.runtime import state

    records = state.list_records(all_states=args.all)
    if args.quiet:
        for rec in records:
            print(rec.id if args.no_trunc else rec.short_id)
        return 0
    rows = [ps_row(r) for r in records]
    if args.format:
        fmt = args.format.removeprefix("table ")
        for row in rows:
            print(template(fmt, row))
        return 0
    cols = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    heads = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    table = [heads] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    for t in table:
        print("   ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    if args.attach or args.interactive:
        if len(args.containers) != 1:
            raise ContainerlabError("start -a/-i takes exactly one container")
        return _start_attached(args.containers[0], args.interactive, args.detach_keys)
    return _each(args.containers, lambda n: (lifecycle.start(n), n)[1])


def _start_attached(name: str, interactive: bool, keys: str | None) -> int:
    """``start -a`` (``-i`` implies it). A ``-t`` container starts under its supervisor
    with us attached, as ``run -it`` (the detach keys leave it running); another one is
    supervised by this process in the foreground, as ``run`` does. Our stdin is passed on
    only with ``-i`` to a container created with ``-i``, as in Docker."""
    import subprocess

    from containerlab.runtime import container, lifecycle

    rec = lifecycle.get(name)
    stdin = interactive and bool(rec.config.get("interactive"))
    if rec.config.get("tty"):
        from containerlab.runtime import attach

        keys_bytes = attach.parse_detach_keys(keys)
        if rec.running:  # Docker's start -a attaches to a running container
            code = attach.attach(rec.id, stdin=stdin, detach_keys=keys_bytes)
        else:
            conn = attach.start(rec.id)
            code = attach.session(conn, rec.id, interactive=stdin, detach_keys=keys_bytes)
        return 0 if code is None else code
    if rec.running:
        raise ContainerlabError(f"container {rec.name} is already running")
    proc = container.launch(rec, stdin=None if stdin else subprocess.DEVNULL)
    code = proc.wait()
    container.finish(rec.id, code)
    if rec.config.get("auto_remove"):
        container.remove_record(rec.id)
    return code


def cmd_attach(args: argparse.Namespace) -> int:
    from containerlab.runtime import attach

    keys = attach.parse_detach_keys(args.detach_keys)
    code = attach.attach(args.container, stdin=not args.no_stdin, detach_keys=keys)
    return 0 if code is None else code  # None: detached, the container runs on


def cmd_stop(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.stop(n, args.time), n)[1])


def cmd_kill(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.kill(n, args.signal), n)[1])


def cmd_restart(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.restart(n, args.time), n)[1])


def cmd_rm(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: (lifecycle.remove(n, force=args.force), n)[1])


def cmd_wait(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    return _each(args.containers, lambda n: lifecycle.wait(n))


def cmd_logs(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    tail = None if args.tail in (None, "all") else int(args.tail)
    for entry in lifecycle.log_entries(args.container, tail=tail, follow=args.follow):
        out = sys.stdout if entry.get("stream") != "stderr" else sys.stderr
        text = entry.get("log", "")
        if args.timestamps:
            text = f"{entry.get('time', '')} {text}"
        out.write(text)
        out.flush()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    procs = lifecycle.processes(args.container)
    rows = [["PID", "PPID", "PID INSIDE", "UID", "STATE", "CMD"]]
    rows += [
        [
            str(p["pid"]),
            str(p["ppid"]),
            str(p["inner_pid"]),
            str(p["uid"]),
            p["state"].split()[0],
            p["cmd"],
        ]
        for p in procs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "   " + r[5])
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    from containerlab.runtime import lifecycle

    lifecycle.rename(args.container, args.new_name)
    return 0


def cmd_system_prune(args: argparse.Namespace) -> int:
    from containerlab.image.store import Store
    from containerlab.runtime import lifecycle, state

    removed = [lifecycle.remove(r.id) for r in state.list_records() if not r.running]
    print("Deleted Containers:" if removed else "No stopped containers.")
    for cid in removed:
        print(cid)
    # Unused networks too, as Docker's does; the default one as well (see networks.prune).
    from containerlab.network import networks

    gone = networks.prune(keep_default=False)
    if gone:
        print("Deleted Networks:")
        print("\n".join(gone))
    gc = Store().gc()
    print(f"Deleted {gc['blobs']} image blobs and {gc['layers']} unpacked layers no image uses.")
    return 0


# --- parsers --------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help="list containers", description="List containers.")
    p.add_argument("-a", "--all", action="store_true", help="all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p.add_argument("--format", help="Go-template-like format, e.g. '{{.Names}} {{.Status}}'")
    p.set_defaults(func=cmd_ps)

    def names(p: argparse.ArgumentParser) -> None:
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = sub.add_parser(
        "start",
        help="start created or stopped containers",
        description="Start containers (in the background, under a supervisor).",
    )
    p.add_argument(
        "-a",
        "--attach",
        action="store_true",
        help="stay attached: its output here, its exit code ours",
    )
    p.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="attach, and pass stdin on (to a container created with -i)",
    )
    detach_keys_flag(p)
    names(p)
    p.set_defaults(func=cmd_start)
    p = sub.add_parser(
        "attach",
        help="attach to a running container's terminal or output",
        usage="containerlab attach [OPTIONS] CONTAINER",
        description="Attach to a running container: a -t container's terminal (what you "
        "type goes to it, the detach keys leave it running, its exit code is ours), or the "
        "live output of one without -t (Ctrl-C leaves it running).",
    )
    p.add_argument("--no-stdin", action="store_true", help="do not pass our stdin on")
    detach_keys_flag(p)
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_attach)
    for verb, text, func in (
        ("stop", "stop containers: SIGTERM, then SIGKILL", cmd_stop),
        ("restart", "stop then start containers", cmd_restart),
    ):
        p = sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument(
            "-t",
            "--time",
            type=float,
            default=None,
            metavar="SECONDS",
            help="grace period before SIGKILL (default 10)",
        )
        names(p)
        p.set_defaults(func=func)
    p = sub.add_parser(
        "kill",
        help="send a signal to containers (default SIGKILL)",
        description="Send a signal to the containers' PID 1.",
    )
    p.add_argument("-s", "--signal", default="KILL", help="signal name or number")
    names(p)
    p.set_defaults(func=cmd_kill)
    p = sub.add_parser("rm", help="remove containers", description="Remove containers.")
    p.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    names(p)
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser(
        "wait",
        help="wait for containers to exit; print their exit codes",
        description="Block until containers stop; print their exit codes.",
    )
    names(p)
    p.set_defaults(func=cmd_wait)
    p = sub.add_parser("logs", help="show a container's output", description="Fetch logs.")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    p.add_argument("-n", "--tail", default="all", help="only the last N lines")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser(
        "top",
        help="show a container's processes",
        description="Show the processes of a container's PID namespace.",
    )
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_top)
    p = sub.add_parser("rename", help="rename a container", description="Rename a container.")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)

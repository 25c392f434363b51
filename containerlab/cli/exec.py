"""``containerlab exec``: run a command in a running container, with Docker's flags."""

from __future__ import annotations

import argparse
import subprocess

from containerlab.cli.run import _parse_env, env_flags


def cmd_exec(args: argparse.Namespace) -> int:
    from containerlab.runtime import exec as exec_

    if not args.command:
        args._parser.error("exec needs a command after the container: CONTAINER COMMAND [ARG...]")
    spec = exec_.ExecSpec(
        argv=tuple(args.command),
        env=_parse_env(args.env, args.env_file),
        user=args.user,
        workdir=args.workdir,
        tty=args.tty,
        interactive=args.interactive,
    )
    if args.detach:
        exec_.start_detached(args.container, spec)
        return 0  # Docker prints nothing for a detached exec
    if spec.tty:
        return exec_.run_attached(args.container, spec)
    # Without -i the command's stdin is empty, as in Docker; with it, ours is passed on.
    stdin = None if spec.interactive else subprocess.DEVNULL
    return exec_.run(args.container, spec, proxy_signals=True, stdin=stdin)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command in a running container",
        usage="containerlab exec [OPTIONS] CONTAINER COMMAND [ARG...]",
        description="Run a command in a running container: it joins every namespace of the "
        "container's PID 1 (pid included, so it is one of the container's processes) and "
        "exits with the command's code (126/127 when it cannot run).",
    )
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument(
        "-i", "--interactive", action="store_true", help="keep stdin open: the command reads it"
    )
    p.add_argument("-t", "--tty", action="store_true", help="give the command a pseudo-terminal")
    env_flags(p, " (on top of the container's)")
    p.add_argument(
        "-u", "--user", metavar="USER[:GROUP]", help="user (name or uid) and group to run as"
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_exec, _parser=p)

"""`containerlab run`: a command in a new container, with Docker's flags."""

from __future__ import annotations

import argparse
import os

from containerlab.errors import ContainerlabError


def _parse_env(items: list[str], env_files: list[str]) -> dict[str, str]:
    """``-e KEY=VAL``, ``-e KEY`` (taken from our environment), ``--env-file FILE``."""
    env: dict[str, str] = {}
    lines: list[tuple[str, str]] = []
    for path in env_files:
        try:
            with open(path) as f:
                lines += [(f"{path}:{n}", line.strip()) for n, line in enumerate(f, 1)]
        except OSError as e:
            raise ContainerlabError(f"cannot read env file {path}: {e.strerror}") from None
    lines += [("-e", item) for item in items]
    for where, item in lines:
        if not item or item.startswith("#"):
            continue
        key, sep, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise ContainerlabError(
                f"invalid environment variable '{item}' ({where}); use KEY=VALUE"
            )
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def cmd_run(args: argparse.Namespace) -> int:
    from containerlab import syscalls
    from containerlab.runtime import container
    from containerlab.runtime.spec import ContainerSpec

    if args.explain:
        syscalls.set_explain(True)
        os.environ["CONTAINERLAB_EXPLAIN"] = "1"  # the launcher explains its steps too
    if args.detach:
        raise ContainerlabError(
            "-d (detached containers) is not available yet: it arrives with the container "
            "lifecycle (supervisor, logs, stop); run in the foreground for now"
        )
    spec = ContainerSpec(
        image=args.image,
        argv=tuple(args.command),  # empty: the image's Cmd
        entrypoint=None if args.entrypoint is None else tuple(args.entrypoint.split()),
        env=_parse_env(args.env, args.env_file),
        workdir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        name=args.name,
    )
    return container.run(spec, proxy_signals=True)


def register(sub: argparse._SubParsersAction) -> None:
    # -h is --hostname in `docker run`, so run's help is --help only (add_help=False).
    run = sub.add_parser(
        "run",
        help="run a command in a new container",
        add_help=False,
        usage="containerlab run [OPTIONS] IMAGE [COMMAND] [ARG...]",
        description="Run a command in a new container. Every run is removed "
        "when it ends (--rm) until the container lifecycle "
        "arrives.",
    )
    run.add_argument(
        "--rm", action="store_true", help="remove the container when it exits (always, for now)"
    )
    run.add_argument("-d", "--detach", action="store_true", help="run in the background (soon)")
    run.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="keep stdin open (stdin is always passed through for now)",
    )
    run.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an environment variable",
    )
    run.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read environment variables from a file",
    )
    run.add_argument(
        "-u",
        "--user",
        metavar="USER[:GROUP]",
        help="user (name or uid) and group to run as, from the image's passwd",
    )
    run.add_argument(
        "--entrypoint", metavar="CMD", help="replace the image's ENTRYPOINT (and drop its CMD)"
    )
    run.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    run.add_argument(
        "--hostname", "-h", metavar="NAME", help="container hostname (default: the short id)"
    )
    run.add_argument("--name", help="a name for the container")
    run.add_argument(
        "--explain",
        action="store_true",
        help="print each kernel step and its shell equivalent (or CONTAINERLAB_EXPLAIN=1)",
    )
    run.add_argument("--help", action="help", help="show this help and exit")
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    run.set_defaults(func=cmd_run)

"""The ``containerlab`` command: a docker-like front end over the runtime.

Thin on purpose: it parses flags as Docker spells them, calls the same runtime functions a
notebook calls, and turns errors into messages and exit codes (125 when containerlab itself
fails, 126/127 when the command cannot be run, as Docker does). Imports of the runtime
happen inside each verb so ``containerlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from containerlab import __version__
from containerlab.errors import ContainerlabError

EXIT_CLI_ERROR = 125  # Docker's code for "the runtime itself failed", bad flags included


class _Parser(argparse.ArgumentParser):
    """argparse, but bad flags exit 125 and say where to look, as Docker's CLI does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"containerlab: {message}\nSee '{self.prog} --help'.", file=sys.stderr)
        sys.exit(EXIT_CLI_ERROR)


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
        argv=tuple(args.command) or ("sh",),
        env=_parse_env(args.env, args.env_file),
        workdir=args.workdir or "/",
        hostname=args.hostname,
        name=args.name,
    )
    return container.run(spec, proxy_signals=True)


def cmd_info(args: argparse.Namespace) -> int:
    from containerlab import host, paths

    print(f"containerlab {__version__}")
    print(f"state root: {paths.state_root()}   run root: {paths.run_root()}")
    print(host.report())
    return 0 if all(c.ok or not c.required for c in host.checks()) else 1


def cmd_version(args: argparse.Namespace) -> int:
    import platform

    print(
        f"containerlab {__version__} (python {platform.python_version()}, "
        f"kernel {platform.release()})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="containerlab",
        description="A docker-like container runtime built from the kernel up, "
        "to learn how containers work.",
    )
    p.add_argument("--version", action="version", version=f"containerlab {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)

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

    info = sub.add_parser("info", help="check this machine: kernel, root, cgroups, overlayfs...")
    info.set_defaults(func=cmd_info)
    version = sub.add_parser("version", help="show the version")
    version.set_defaults(func=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Flags a verb does not know land here; name the flag and the verb's help, as Docker.
        verb = f" {args.verb}" if getattr(args, "verb", None) else ""
        print(
            f"containerlab: unknown flag: {extra[0]}\nSee 'containerlab{verb} --help'.",
            file=sys.stderr,
        )
        return EXIT_CLI_ERROR
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ContainerlabError as e:
        print(f"containerlab: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a syscall failed: the message names the operation and the path
        print(f"containerlab: {e}", file=sys.stderr)
        return EXIT_CLI_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

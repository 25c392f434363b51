"""The ``containerlab`` command: a docker-like front end over the runtime.

Thin on purpose: it parses flags as Docker spells them, calls the same runtime functions a
notebook calls, and turns errors into messages and exit codes (125 when containerlab itself
fails, 126/127 when the command cannot be run, as Docker does). Imports of the runtime
happen inside each verb so ``containerlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from containerlab import __version__
from containerlab.cli import build as build_verbs
from containerlab.cli import containers as container_verbs
from containerlab.cli import exec as exec_verbs
from containerlab.cli import images as image_verbs
from containerlab.cli import resources as resource_verbs
from containerlab.cli import run as run_verbs
from containerlab.cli import system as system_verbs
from containerlab.cli.common import EXIT_CLI_ERROR, Parser
from containerlab.errors import ContainerlabError


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
    p = Parser(
        prog="containerlab",
        description="A docker-like container runtime built from the kernel up, "
        "to learn how containers work.",
    )
    p.add_argument("--version", action="version", version=f"containerlab {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)

    run_verbs.register(sub)
    container_verbs.register(sub)
    resource_verbs.register(sub)
    exec_verbs.register(sub)
    image_verbs.register(sub)
    build_verbs.register(sub)
    system_verbs.register(sub)

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

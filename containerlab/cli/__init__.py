"""The ``containerlab`` command: a docker-like front end over the runtime.

Thin on purpose: it parses flags as Docker spells them, calls the same runtime functions a
notebook calls, and turns errors into messages and exit codes (125 when containerlab itself
fails, 126/127 when the command cannot be run, as Docker does). Imports of the runtime
happen inside each verb so ``containerlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from containerlab import __version__
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


#: Which module registers which verbs. Only the module of the verb being run is imported
#: and registered: building all ~50 parsers costs more than a container start's budget.
VERB_MODULES: dict[str, tuple[str, ...]] = {
    "run": ("run", "create"),
    "containers": (
        "ps",
        "start",
        "attach",
        "stop",
        "restart",
        "kill",
        "rm",
        "wait",
        "logs",
        "top",
        "rename",
    ),
    "resources": ("update", "stats", "pause", "unpause"),
    "exec": ("exec",),
    "images": (
        "images",
        "pull",
        "push",
        "rmi",
        "inspect",
        "history",
        "save",
        "load",
        "tag",
        "import",
        "export",
        "image",
    ),
    "build": ("build", "builder", "commit", "diff"),
    "system": ("system",),
    "network": ("network", "port"),
}


def _verb_of(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``verb`` only the module that owns it is registered (fast path)."""
    p = Parser(
        prog="containerlab",
        description="A docker-like container runtime built from the kernel up, "
        "to learn how containers work.",
    )
    p.add_argument("--version", action="version", version=f"containerlab {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)
    owners = [m for m, verbs in VERB_MODULES.items() if verb in verbs]
    if not owners and verb not in ("info", "version"):
        owners = list(VERB_MODULES)  # no verb, or an unknown one: help lists them all
    for module in owners:
        importlib.import_module(f"containerlab.cli.{module}").register(sub)
    info = sub.add_parser("info", help="check this machine: kernel, root, cgroups, overlayfs...")
    info.set_defaults(func=cmd_info)
    version = sub.add_parser("version", help="show the version")
    version.set_defaults(func=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``containerlab`` command (``argv``: its arguments, default ``sys.argv[1:]``).

    Without ``argv`` this is the command itself, and it does not return: it exits (see
    :func:`_exit`). With ``argv`` (tests, a notebook) it returns the exit code.
    """
    if argv is None:
        # The command is a short-lived process whose start-up objects (modules, classes,
        # parsers) live until it exits: the cyclic garbage collector, triggered every few
        # hundred allocations while they are made, finds nothing to free among them. A
        # container start spends milliseconds there; see _collect_less, and _exit.
        _collect_less()
        _exit(_main(sys.argv[1:]) or 0)
    return _main(argv)


def _exit(code: int) -> None:
    """Leave the process at once, as a C program's exit does, once the output is out.

    The interpreter's own shutdown frees every module, class and object one by one before
    the kernel takes the whole address space back anyway: 3-5 ms of a container start.
    Nothing of the command's needs it (it starts no thread and registers no exit handler
    of its own), so only the buffered output is flushed first.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): as Python's own exit says
            code = code or 120
    os._exit(code)


def _main(argv: Sequence[str]) -> int:
    argv = list(argv)
    parser = build_parser(_verb_of(argv))
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


def _collect_less() -> None:
    """Collect garbage rarely while the command starts.

    Collections still run, every 50000 net allocations instead of 700, so a long-running
    command (a foreground container, ``logs -f``) still frees its cycles.
    """
    import gc

    gc.set_threshold(50_000, *gc.get_threshold()[1:])


if __name__ == "__main__":
    sys.exit(main())

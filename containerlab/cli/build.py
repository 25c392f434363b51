"""``build`` (from a Dockerfile), ``commit`` and ``diff`` (from a container)."""

from __future__ import annotations

import argparse
import os


def cmd_diff(args: argparse.Namespace) -> int:
    from containerlab.build import commit

    for change in commit.diff(args.container):
        print(change)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from containerlab.build import commit
    from containerlab.image.store import Store

    digest = commit.commit(
        args.container, args.reference, message=args.message or "", author=args.author or ""
    )
    print(Store().image(digest).id)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from containerlab.build import builder
    from containerlab.errors import ContainerlabError

    build_args = {}
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")
        build_args[key] = value
    if args.quiet:

        def out(_line: str) -> None:
            pass
    else:

        def out(line: str) -> None:
            print(line, flush=True)

    try:
        result = builder.build(
            args.context,
            dockerfile=args.file,
            tags=tuple(args.tag),
            build_args=build_args,
            target=args.target,
            no_cache=args.no_cache,
            out=out,
        )
    except ContainerlabError:
        raise
    if args.quiet:
        print(result.image_id)
    return 0


def cmd_builder_prune(args: argparse.Namespace) -> int:
    from containerlab.build import builder

    print(f"Removed {builder.prune_cache()} cached build steps.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build an image from a Dockerfile",
        description="Build an image from a Dockerfile and a context directory.",
    )
    p.add_argument("context", metavar="CONTEXT", help="the build context: a directory")
    p.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="NAME[:TAG]",
        help="name the image (repeatable)",
    )
    p.add_argument(
        "-f", "--file", metavar="FILE", help="the Dockerfile (default: CONTEXT/Dockerfile)"
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a build-time variable (an ARG)",
    )
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.set_defaults(func=cmd_build)
    builder = sub.add_parser(
        "builder", help="manage the build cache", description="Manage the build cache."
    )
    bsub = builder.add_subparsers(
        dest="builder_verb", metavar="COMMAND", parser_class=type(builder)
    )
    p = bsub.add_parser(
        "prune", help="forget every cached build step", description="Remove the build cache."
    )
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.set_defaults(func=cmd_builder_prune)

    p = sub.add_parser(
        "diff",
        help="list a container's changed files (A/C/D)",
        description="Show what a container added (A), changed (C) and "
        "deleted (D) compared with its image.",
    )
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser(
        "commit",
        help="make an image from a container's changes",
        description="Create a new image: the container's image plus its writable layer.",
    )
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-m", "--message", help="a commit message (shown by history)")
    p.add_argument("-a", "--author", help='author, e.g. "Ada <ada@example.com>"')
    p.set_defaults(func=cmd_commit)

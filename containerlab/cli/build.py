"""``commit`` and ``diff`` (and ``build``, with the builder): images from containers."""

from __future__ import annotations

import argparse


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


def register(sub: argparse._SubParsersAction) -> None:
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

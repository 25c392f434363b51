"""``containerlab system``: prune what is stopped and unused; doctor what was left behind."""

from __future__ import annotations

import argparse


def cmd_doctor(args: argparse.Namespace) -> int:
    from containerlab.runtime import doctor

    findings = doctor.examine()
    if not findings:
        print("nothing left behind: every container's resources match its record")
        return 0
    for f in findings:
        print(f"{f.kind:10} {f.what}\n{'':10} {f.why}")
    if not args.fix:
        print(
            f"\n{len(findings)} leftover(s); run `containerlab system doctor --fix` to remove them"
        )
        return 1
    for line in doctor.repair(findings):
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from containerlab.cli.containers import cmd_system_prune

    system = sub.add_parser(
        "system",
        help="prune unused things; find and fix leftovers",
        description="Manage containerlab itself.",
    )
    ssub = system.add_subparsers(dest="system_verb", metavar="COMMAND", parser_class=type(system))
    p = ssub.add_parser(
        "prune",
        help="remove stopped containers, unused networks and unused image data",
        description="Remove every stopped container, every network no container uses (the "
        "default one too: it comes back on the next run), then image data no image uses.",
    )
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.set_defaults(func=cmd_system_prune)
    p = ssub.add_parser(
        "doctor",
        help="list (and with --fix remove) leftovers",
        description="Compare what the records say with what the machine has: "
        "processes, mounts, directories, image holds. Leftovers of "
        "a killed CLI or supervisor are listed; --fix removes them.",
    )
    p.add_argument("--fix", action="store_true", help="remove what is listed")
    p.set_defaults(func=cmd_doctor)

"""``containerlab run`` and ``create``: a command in a new container, with Docker's flags."""

from __future__ import annotations

import argparse
import os

from containerlab.cli.common import detach_keys_flag
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


def spec_from(args: argparse.Namespace):
    from containerlab.runtime.spec import ContainerSpec

    return ContainerSpec(
        image=args.image,
        argv=tuple(args.command),  # empty: the image's Cmd
        entrypoint=None if args.entrypoint is None else tuple(args.entrypoint.split()),
        env=_parse_env(args.env, args.env_file),
        workdir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        name=args.name,
        tty=args.tty,
        interactive=args.interactive,
        init=args.init,
        auto_remove=getattr(args, "rm", False),
        limits=limits_from(args),
        network=args.network,
        ip=args.ip,
        network_aliases=tuple(args.network_alias),
        mac_address=args.mac_address,
        publish=tuple(args.publish),
        publish_all=args.publish_all,
        dns=tuple(args.dns),
        dns_search=tuple(args.dns_search),
        add_hosts=tuple(args.add_host),
    )


def limits_from(args: argparse.Namespace):
    """--memory, --cpus... as ``cgroups.Limits`` (None when no flag was given)."""
    values = {
        "memory": args.memory,
        "memory_swap": args.memory_swap,
        "cpus": args.cpus,
        "cpu_shares": args.cpu_shares,
        "cpuset_cpus": args.cpuset_cpus,
        "pids": args.pids_limit,
    }
    if all(v is None for v in values.values()):
        return None
    from containerlab import cgroups

    if values["memory"] is not None:
        values["memory"] = cgroups.parse_size(values["memory"])
    if values["memory_swap"] is not None:
        swap = values["memory_swap"]
        values["memory_swap"] = -1 if swap == "-1" else cgroups.parse_size(swap)
    if values["cpus"] is not None:
        values["cpus"] = cgroups.parse_cpus(values["cpus"])
    return cgroups.Limits(**{k: v for k, v in values.items() if v is not None})


def resource_flags(p: argparse.ArgumentParser) -> None:
    """The cgroup limits, as `docker run` and `docker update` spell them."""
    p.add_argument(
        "-m",
        "--memory",
        metavar="BYTES",
        help="memory limit (e.g. 64m, 1g); the OOM killer acts above it",
    )
    p.add_argument(
        "--memory-swap", metavar="BYTES", help="memory plus swap limit (-1: unlimited swap)"
    )
    p.add_argument("--cpus", metavar="N", help="CPUs' worth of time, e.g. 0.5")
    p.add_argument("--cpu-shares", type=int, metavar="N", help="relative CPU weight (default 1024)")
    p.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs it may run on, e.g. 0-1 or 0")
    p.add_argument("--pids-limit", type=int, metavar="N", help="most processes and threads at once")


def network_flags(p: argparse.ArgumentParser) -> None:
    """Networks, ports and names, as `docker run` spells them."""
    p.add_argument(
        "--network",
        "--net",
        default="bridge",
        metavar="NET",
        help="bridge (default), a network from `network create`, none, host or container:NAME",
    )
    p.add_argument("--ip", metavar="ADDR", help="this IPv4 address on a user network")
    p.add_argument(
        "--mac-address", metavar="MAC", help="eth0's MAC address, e.g. 02:42:ac:11:00:02"
    )
    p.add_argument(
        "--network-alias",
        "--net-alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the container is found by on a user network",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:]HOST:CTR[/udp]",
        help="publish a container port on the host (-p 8080:80, -p 80 for a random port)",
    )
    p.add_argument(
        "-P",
        "--publish-all",
        action="store_true",
        help="publish every port the image EXPOSEs on a random host port",
    )
    for flag, text in (
        ("--dns", "a nameserver for the container's /etc/resolv.conf"),
        ("--dns-search", "a search domain for the container's /etc/resolv.conf"),
        ("--add-host", "add NAME:IP to the container's /etc/hosts (IP may be host-gateway)"),
    ):
        p.add_argument(flag, action="append", default=[], metavar="VALUE", help=text)


def _explain(args: argparse.Namespace) -> None:
    if args.explain:
        from containerlab import syscalls

        syscalls.set_explain(True)
        os.environ["CONTAINERLAB_EXPLAIN"] = "1"  # the launcher explains its steps too


def cmd_run(args: argparse.Namespace) -> int:
    from containerlab.runtime import container

    _explain(args)
    spec = spec_from(args)
    keys = b""
    if spec.tty or args.detach_keys is not None:
        # A bad --detach-keys is refused (125) before anything is made.
        from containerlab.runtime import attach

        keys = attach.parse_detach_keys(args.detach_keys)
    if args.detach:
        from containerlab.runtime import supervisor

        rec = container.create(spec)
        try:
            supervisor.start_detached(rec.id)
        except ContainerlabError:
            if spec.auto_remove:
                container.remove_record(rec.id)
            raise
        print(rec.id)
        return 0
    if spec.tty:
        # As Docker does it: create, attach, start. The supervisor holds the container's
        # terminal (as for -d) and we attach to it before it launches the command; the
        # detach keys leave it running, `containerlab attach` comes back. Relayed here even
        # when our stdin is not a terminal: `run -t ... | cat` works, as in Docker.
        from containerlab.runtime import attach

        rec = container.create(spec)
        try:
            conn = attach.start(rec.id)
        except ContainerlabError:
            if spec.auto_remove:
                container.remove_record(rec.id)
            raise
        code = attach.session(conn, rec.id, interactive=spec.interactive, detach_keys=keys)
        return 0 if code is None else code  # None: detached, the container runs on
    # Without -i the container's stdin is empty, as in Docker; with it, ours is passed on.
    from containerlab.namespaces import DEVNULL  # subprocess.DEVNULL, without subprocess

    stdin = None if spec.interactive else DEVNULL
    return container.run(spec, proxy_signals=True, stdin=stdin)


def cmd_create(args: argparse.Namespace) -> int:
    from containerlab.runtime import container

    print(container.create(spec_from(args)).id)
    return 0


def env_flags(p: argparse.ArgumentParser, what: str = "") -> None:
    """``-e`` and ``--env-file``, as ``run``, ``create`` and ``exec`` spell them."""
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"set an environment variable{what}",
    )
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read environment variables from a file",
    )


def _container_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    if run:
        p.add_argument(
            "-d",
            "--detach",
            action="store_true",
            help="run in the background and print the container id",
        )
        detach_keys_flag(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="keep stdin open: the container reads what you type",
    )
    p.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="give the container a pseudo-terminal (use with -i for a shell)",
    )
    p.add_argument(
        "--init",
        action="store_true",
        help="run a small init as PID 1 that reaps zombies and forwards signals",
    )
    p.add_argument("--name", help="a name for the container (unique)")
    env_flags(p)
    p.add_argument(
        "-u",
        "--user",
        metavar="USER[:GROUP]",
        help="user (name or uid) and group to run as, from the image's passwd",
    )
    p.add_argument(
        "--entrypoint", metavar="CMD", help="replace the image's ENTRYPOINT (and drop its CMD)"
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument(
        "--hostname", "-h", metavar="NAME", help="container hostname (default: the short id)"
    )
    resource_flags(p)
    network_flags(p)
    p.add_argument(
        "--explain",
        action="store_true",
        help="print each kernel step and its shell equivalent (or CONTAINERLAB_EXPLAIN=1)",
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def register(sub: argparse._SubParsersAction) -> None:
    # -h is --hostname in `docker run`, so the help is --help only (add_help=False).
    run = sub.add_parser(
        "run",
        help="run a command in a new container",
        add_help=False,
        usage="containerlab run [OPTIONS] IMAGE [COMMAND] [ARG...]",
        description="Run a command in a new container: in the foreground (its output here, "
        "its exit code ours), or with -d in the background under a supervisor.",
    )
    _container_flags(run, run=True)
    run.set_defaults(func=cmd_run)
    create = sub.add_parser(
        "create",
        help="create a container without starting it",
        add_help=False,
        usage="containerlab create [OPTIONS] IMAGE [COMMAND] [ARG...]",
        description="Create a container (status 'created'); `containerlab start` runs it.",
    )
    _container_flags(create, run=False)
    create.set_defaults(func=cmd_create)

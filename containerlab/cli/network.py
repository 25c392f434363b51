"""``containerlab network``: create, list, inspect and remove networks (``docker network``).

A network is a bridge, a subnet with its address pool and its firewall rules, recorded by
name under the state root (see ``containerlab.network.networks``). containerlab identifies
networks by their name, so the name is also what ``create`` prints and what ``Id`` shows.
``connect``/``disconnect`` plug a container into one more network, or out of one, while it
runs (see ``containerlab.runtime.networking``).
"""

from __future__ import annotations

import argparse
import json
import sys

from containerlab.cli.common import template
from containerlab.errors import ContainerlabError

#: The Docker option key naming a network's bridge, so inspect reads as Docker's does.
BRIDGE_OPTION = "com.docker.network.bridge.name"


def cmd_create(args: argparse.Namespace) -> int:
    from containerlab.network import networks

    net = networks.create(args.name, args.subnet, internal=args.internal)
    print(net.name)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from containerlab.network import networks

    nets = networks.ls()
    if args.quiet:
        for net in nets:
            print(net.name)
        return 0
    rows = [["NAME", "BRIDGE", "DRIVER", "SUBNET", "GATEWAY", "INTERNAL"]]
    rows += [
        [n.name, n.bridge, "bridge", n.subnet, n.gateway, "yes" if n.internal else "no"]
        for n in nets
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def inspect_doc(name: str) -> dict:
    """A network in the shape of ``docker network inspect`` (the keys a learner compares)."""
    from containerlab.network import networks

    info = networks.inspect(name)
    prefix = info["subnet"].split("/")[1]
    return {
        "Name": info["name"],
        "Id": info["name"],  # networks are recorded by name; there is no other id
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Config": [{"Subnet": info["subnet"], "Gateway": info["gateway"]}],
        },
        "Internal": info["internal"],
        # Endpoints by owner (a container id), as Docker keys them by container id.
        "Containers": {
            owner: {"Name": _container_name(owner), "IPv4Address": f"{address}/{prefix}"}
            for owner, address in sorted(info["endpoints"].items())
        },
        "Options": {BRIDGE_OPTION: info["bridge"]},
        "Labels": {},
        # Not Docker's: whether the bridge exists right now (false after a reboot until
        # the network is used again).
        "BridgePresent": info["bridge_present"],
    }


def _container_name(owner: str) -> str:
    from containerlab.runtime import state

    try:
        return state.load(owner).name
    except ContainerlabError:  # an endpoint made by hand (a notebook), not a container's
        return ""


def cmd_connect(args: argparse.Namespace) -> int:
    from containerlab.runtime import networking

    networking.connect(args.container, args.network, args.ip, tuple(args.alias))
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    from containerlab.runtime import networking

    networking.disconnect(args.container, args.network)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    """``port CONTAINER [PORT[/PROTO]]``: its published ports, as ``docker port`` lists them."""
    from containerlab.network import nat
    from containerlab.runtime import lifecycle, networking

    rec = lifecycle.get(args.container)
    mappings = [nat.parse_publish(p) for p in networking.settings(rec)["Ports"]]
    if args.port:
        number, _, proto = args.port.partition("/")
        mappings = [
            m for m in mappings if str(m.container_port) == number and m.proto == (proto or "tcp")
        ]
        if not mappings:
            raise ContainerlabError(f"no public port '{args.port}' published for {rec.name}")
    for m in mappings:
        host = f"{m.host_ip or '0.0.0.0'}:{m.host_port}"
        print(host if args.port else f"{m.container_port}/{m.proto} -> {host}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    docs, status = [], 0
    for name in args.names:
        try:
            docs.append(inspect_doc(name))
        except ContainerlabError as e:
            print(f"containerlab: {e}", file=sys.stderr)
            status = 1
    if args.format:
        for doc in docs:
            print(template(args.format, doc))
    else:
        print(json.dumps(docs, indent=4))
    return status


def cmd_rm(args: argparse.Namespace) -> int:
    """Docker removes what it can, names each removed network, and reports the rest."""
    from containerlab.network import networks

    if len(args.names) == 1:  # one name: its error is the command's error (exit 125)
        networks.remove(args.names[0])
        print(args.names[0])
        return 0
    status = 0
    for name in args.names:
        try:
            networks.remove(name)
            print(name)
        except ContainerlabError as e:
            print(f"containerlab: {e}", file=sys.stderr)
            status = 1
    return status


def cmd_prune(args: argparse.Namespace) -> int:
    from containerlab.network import networks

    removed = networks.prune(keep_default=True)
    print("Deleted Networks:" if removed else "No unused networks.")
    for name in removed:
        print(name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    network = sub.add_parser(
        "network",
        help="manage networks: bridges with a subnet, NAT and isolation",
        description="Manage networks. Each is a Linux bridge (clab-NAME) holding the gateway "
        "address of its subnet, an address pool, and firewall rules (masquerade out, "
        "isolation from other networks).",
    )
    nsub = network.add_subparsers(
        dest="network_verb", metavar="COMMAND", parser_class=type(network)
    )
    p = nsub.add_parser(
        "create",
        help="create a network",
        description="Create a network: record it, start its address pool, make its bridge "
        "and firewall rules. Without --subnet a free /24 of 172.31.0.0/16 is picked.",
    )
    p.add_argument("--subnet", metavar="CIDR", help="the IPv4 subnet, e.g. 10.20.0.0/24")
    p.add_argument(
        "--internal", action="store_true", help="no traffic in or out but through the bridge"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_create)
    p = nsub.add_parser("ls", aliases=["list"], help="list networks", description="List networks.")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.set_defaults(func=cmd_ls)
    p = nsub.add_parser(
        "inspect",
        help="show networks as JSON",
        description="Show networks in the shape of `docker network inspect`.",
    )
    p.add_argument("-f", "--format", help="Go-template-like format, e.g. '{{.IPAM.Config}}'")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_inspect)
    p = nsub.add_parser(
        "rm",
        aliases=["remove"],
        help="remove networks",
        description="Remove networks: their firewall rules, bridge, address pool and record. "
        "Refused while endpoints are attached.",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_rm)
    p = nsub.add_parser(
        "prune",
        help="remove every network without endpoints",
        description="Remove every network that has no endpoint attached, except the default "
        "network 'bridge'.",
    )
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.set_defaults(func=cmd_prune)
    port = sub.add_parser(
        "port",
        help="list a container's published ports",
        description="List the ports a running container publishes on the host (-p, -P).",
    )
    port.add_argument("container", metavar="CONTAINER")
    port.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    port.set_defaults(func=cmd_port)
    p = nsub.add_parser(
        "connect",
        help="connect a container to a network",
        description="Connect a container to one more network: a running one gets a new "
        "interface (eth1, eth2...) now, a stopped one at its next start.",
    )
    p.add_argument("--ip", metavar="ADDR", help="this IPv4 address on the network")
    p.add_argument(
        "--alias", action="append", default=[], metavar="NAME", help="another name on it"
    )
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_connect)
    p = nsub.add_parser(
        "disconnect",
        help="disconnect a container from a network",
        description="Disconnect a container from a network: its interface there goes, its "
        "address goes back to the pool.",
    )
    p.add_argument("-f", "--force", action="store_true", help="accepted for Docker's habit")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_disconnect)

"""A container's network: which networks it joins, its ports, its /etc/hosts and resolv.conf.

``docker run --network NET -p 8080:80`` in four steps, the first at ``create``, the others
each time the container starts:

1. **Recorded first** (:func:`config_from`): the networks, addresses asked for, ports and
   DNS settings go into the container's record before anything exists on the host. Every
   host resource derives from it (the veth's name from the id and the network, the address
   pool entry and the firewall rules carry the id), so ``rm`` and ``system doctor`` can
   always find and undo them.
2. **Plugged in** (:func:`plug`), while the launcher waits between creating the namespaces
   and forking PID 1: for each network an address from its pool and a veth pair, the
   container end created inside its network namespace as ``eth0`` (``eth1``...), the host
   end on the network's bridge. Then the published ports' DNAT rules.
3. **Named** (:func:`write_files`): /etc/hosts, /etc/resolv.conf and /etc/hostname are
   files of the record, bind-mounted into the container by its init (see ``init.setup``).
4. **Unplugged** (:func:`unplug`) when it exits: the rules go, the addresses go back to
   their pools (the veths died with the namespace). Like Docker, a restarted container may
   get another address and another random host port.

``--network none`` gives a network namespace with only ``lo``; ``--network host`` gives
none of its own (it shares the host's); ``--network container:NAME`` joins another running
container's namespace (how Kubernetes pods share one network: the "pause" container).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from containerlab.errors import ContainerError, NetworkError
from containerlab.runtime import state

TYPE_CHECKING = False  # typing costs 2 ms to import on every container start
if TYPE_CHECKING:
    from typing import Any

DEFAULT = "bridge"


def _user_network(name: str) -> bool:
    """Whether containers on this network find each other by name (not the default one)."""
    return name != DEFAULT


# --- 1. recorded at create ----------------------------------------------------------------------
def config_from(spec: Any) -> dict[str, Any]:
    """The network part of a container's record, checked: a bad flag fails ``create``."""
    net = spec.network or DEFAULT
    cfg: dict[str, Any] = {
        "mode": "bridge",
        "networks": {},
        "publish": [],
        "publish_all": bool(spec.publish_all),
        "dns": list(spec.dns),
        "dns_search": list(spec.dns_search),
        "add_hosts": [],
    }
    if spec.publish:
        from containerlab.network import nat

        # As typed (checked here): "-p 80" must stay "random host port" for every start.
        cfg["publish"] = [p for p in spec.publish if nat.parse_publish(p)]
    if spec.add_hosts:
        from containerlab.network import dns

        cfg["add_hosts"] = [list(dns.parse_add_host(h)) for h in spec.add_hosts]
    mac = parse_mac(spec.mac_address) if spec.mac_address else None
    if net in ("none", "host") or net.startswith("container:"):
        if spec.ip or spec.network_aliases or mac:
            raise NetworkError(
                f"--ip, --network-alias and --mac-address need a bridge network, not {net!r}"
            )
        if net != "none" and (cfg["publish"] or spec.publish_all):
            raise NetworkError(
                f"ports cannot be published with --network {net}: the container has no"
                " address of its own (with host, it already listens on the host's ports)"
            )
    if net in ("none", "host"):
        cfg["mode"] = net
        if net == "none" and (cfg["publish"] or spec.publish_all):
            raise NetworkError("ports cannot be published with --network none")
        return cfg
    if net.startswith("container:"):
        target = net.partition(":")[2]
        cfg["mode"] = "container"
        cfg["container"] = state.resolve(target)
        return cfg
    if net != DEFAULT:
        from containerlab.network import networks

        networks.get(net)  # exists, or "network 'x' not found; see `containerlab network ls`"
    elif spec.ip:
        raise NetworkError(
            "--ip needs a user-defined network (as in Docker): `containerlab network create"
            " --subnet ... NAME`, then --network NAME"
        )
    if spec.network_aliases and net == DEFAULT:
        raise NetworkError("--network-alias needs a user-defined network, as in Docker")
    cfg["networks"][net] = {"ip": spec.ip, "aliases": list(spec.network_aliases)}
    if mac:
        cfg["networks"][net]["mac"] = mac
    return cfg


def parse_mac(text: str) -> str:
    """``--mac-address``: six hex bytes, ``:`` or ``-`` between them, as lower-case
    ``aa:bb:cc:dd:ee:ff``. A multicast or all-zero address is refused (the kernel would
    refuse it for an interface, as Docker does for --mac-address)."""
    parts = text.replace("-", ":").split(":")
    hexdigits = "0123456789abcdefABCDEF"
    if len(parts) != 6 or any(len(p) != 2 or p.strip(hexdigits) for p in parts):
        raise NetworkError(f"invalid MAC address {text!r}: write six hex bytes, 02:42:ac:11:00:02")
    octets = [int(p, 16) for p in parts]
    if octets[0] & 1 or not any(octets):
        raise NetworkError(
            f"invalid MAC address {text!r}: an interface needs a unicast address (the first"
            " byte even, not all zeros); locally administered ones start 02:"
        )
    return ":".join(f"{o:02x}" for o in octets)


def _netcfg(record: state.Record) -> dict[str, Any]:
    # Records made before networking existed have no "network" key: no network of their own.
    return record.config.get("network") or {"mode": "none", "networks": {}}


def namespace_plan(record: state.Record) -> tuple[frozenset[str], dict[str, int]]:
    """The namespace kinds to create and to join, from the record's kinds and network mode."""
    cfg = _netcfg(record)
    new = frozenset(record.config["namespaces"])
    if cfg["mode"] == "host":
        return new - {"net"}, {}
    if cfg["mode"] == "container":
        other = state.refresh(state.load(cfg["container"]))
        if not other.running:
            raise ContainerError(
                f"cannot join the network of container {other.name} ({other.short_id}): it is"
                " not running; start it first"
            )
        return new - {"net"}, {"net": other.state.pid}
    return new, {}


# --- 3. the files ------------------------------------------------------------------------------
FILES = ("hosts", "resolv.conf", "hostname")


def write_files(record: state.Record) -> list[tuple[str, str]]:
    """Write the container's /etc files under its record; returns (host path, in-container
    path) pairs for its init to bind-mount. Its own addresses come later (:func:`plug`)."""
    from containerlab.network import dns

    cfg = _netcfg(record)
    d = record.dir
    if cfg["mode"] == "container":
        # One network namespace, one set of names: the other container's files.
        d = state.load(cfg["container"]).dir
        return [(str(d / f), f"/etc/{f}") for f in FILES]
    with open("/etc/resolv.conf") as f:
        host_resolv = f.read()
    if cfg["mode"] == "host":
        with open("/etc/hosts") as f:
            hosts = f.read()
    else:
        hosts = _hosts_of(record, {})
    dns.write_in_place(d / "hosts", hosts)
    dns.write_in_place(
        d / "resolv.conf",
        dns.resolv_text(
            host_resolv, cfg["dns"], cfg["dns_search"], own_netns=cfg["mode"] != "host"
        ),
    )
    dns.write_in_place(d / "hostname", record.config["hostname"] + "\n")
    return [(str(d / f), f"/etc/{f}") for f in FILES]


def _endpoints(record: state.Record) -> dict[str, dict[str, str]]:
    try:
        with open(record.dir / "network.json") as f:
            return json.load(f)["endpoints"]
    except (OSError, ValueError, KeyError):
        return {}


def _hosts_of(
    record: state.Record,
    endpoints: dict[str, dict[str, str]],
    pools: dict[str, dict[str, str]] | None = None,
    peers_seen: dict[str, state.Record | None] | None = None,
) -> str:
    """One container's /etc/hosts: itself, its neighbours on user networks, --add-host.

    ``pools`` and ``peers_seen`` memoise address pools and records across the containers of
    one :func:`_refresh_hosts`, which would otherwise read each of them once per neighbour.
    """
    from containerlab.network import dns, ipam

    pools = {} if pools is None else pools
    peers_seen = {} if peers_seen is None else peers_seen

    def load(cid: str) -> state.Record | None:
        if cid not in peers_seen:
            peers_seen[cid] = _load_or_none(cid)
        return peers_seen[cid]

    cfg = _netcfg(record)
    own = [ep["ip"].split("/")[0] for ep in endpoints.values()]
    peers: list[tuple[str, list[str]]] = []
    for net, ep in endpoints.items():  # its own name and aliases resolve too, as in Docker
        mine = [record.name, *(cfg["networks"].get(net) or {}).get("aliases", [])]
        if _user_network(net) and any(mine):
            peers.append((ep["ip"].split("/")[0], [n for n in mine if n]))
    for net in endpoints:
        if not _user_network(net):
            continue
        if net not in pools:
            pools[net] = ipam.allocations(net)
        for owner, ip in sorted(pools[net].items()):
            peer = load(owner) if owner != record.id else None
            if peer is not None:
                aliases = (_netcfg(peer)["networks"].get(net) or {}).get("aliases", [])
                names = [n for n in [peer.name, *aliases, owner[:12]] if n]
                peers.append((ip, list(dict.fromkeys(names))))
    gateway = next((ep["gateway"] for ep in endpoints.values() if ep.get("gateway")), None)
    extra = [
        (name, gateway if ip == dns.HOST_GATEWAY and gateway else ip)
        for name, ip in cfg.get("add_hosts", [])
        if ip != dns.HOST_GATEWAY or gateway
    ]
    return dns.hosts_text(record.config["hostname"], own, peers, extra)


def _refresh_hosts(networks: list[str], also: state.Record | None = None) -> None:
    """Rewrite /etc/hosts of every container on ``networks`` (user networks only)."""
    from containerlab.network import dns, ipam

    with dns.hosts_lock():
        # Read each pool and each record once for the whole rewrite (see _hosts_of).
        pools = {n: ipam.allocations(n) for n in networks if _user_network(n)}
        seen: dict[str, state.Record | None] = {} if also is None else {also.id: also}
        owners = {o for pool in pools.values() for o in pool} | set(seen)
        for owner in sorted(owners):
            if owner not in seen:
                seen[owner] = _load_or_none(owner)
            rec = seen[owner]
            if rec is not None and (rec.dir / "hosts").exists():
                hosts = _hosts_of(rec, _endpoints(rec), pools, seen)
                dns.write_in_place(rec.dir / "hosts", hosts)


def _load_or_none(cid: str) -> state.Record | None:
    try:
        return state.load(cid)
    except state.NoSuchContainerError:
        return None


# --- 2. plugged in at start --------------------------------------------------------------------
def _write_endpoints(record: state.Record, endpoints: dict, ports: list[str]) -> None:
    tmp = record.dir / ".network.json.tmp"
    tmp.write_text(json.dumps({"endpoints": endpoints, "ports": ports}, indent=2))
    os.replace(tmp, record.dir / "network.json")


def _connect_one(
    record: state.Record, name: str, pid: int, ifname: str, ip: str | None, mac: str | None = None
) -> dict:
    from containerlab.network import networks

    # (The default network is up: prepare, or connect, brought it up first.)
    # The first interface holds the default route; the others reach their subnet only.
    ep = networks.connect(
        name, record.id, pid, ip, ifname=ifname, default_route=ifname == "eth0", mac=mac
    )
    return {
        "ip": ep.address,
        "gateway": ep.gateway,
        "mac": ep.mac,
        "veth": ep.host_ifname,
        "ifname": ep.ifname,
        "bridge": ep.bridge,
    }


def prepare(record: state.Record) -> None:
    """What :func:`plug` can do before the network namespace exists: load the network code
    and bring the default network up. The runtime calls it while the launcher makes the
    namespaces (two processes on two cores), so that ``plug`` itself is short."""
    cfg = _netcfg(record)
    if cfg["mode"] != "bridge":
        return
    from containerlab.network import dns, networks  # noqa: F401  (loaded for plug)

    if DEFAULT in cfg["networks"]:
        networks.ensure_default()


def _guests(cid: str) -> Path:
    """Where a container's record lists the containers that joined its network namespace
    (``--network container:``): one empty file each, named by id, while they run."""
    return state.container_dir(cid) / "netns-guests"


def plug(record: state.Record, pid: int) -> None:
    """Connect the launcher's (pid's) new network namespace to the container's networks and
    publish its ports, after :func:`prepare`; undone entirely if any step fails."""
    cfg = _netcfg(record)
    if cfg["mode"] == "container":
        # The host's namespace keeps the other container's veth alive: it must know (see
        # unplug) that its exit does not take that veth away.
        _guests(cfg["container"]).mkdir(exist_ok=True)
        (_guests(cfg["container"]) / record.id).touch()
    if cfg["mode"] != "bridge":
        return
    if _leftovers(record):
        unplug(record)  # a clean slate: what a start that nobody finished (kill -9) left
    endpoints: dict[str, dict] = {}
    ports: list[str] = []
    try:
        for i, (name, opts) in enumerate(cfg["networks"].items()):
            endpoints[name] = _connect_one(
                record, name, pid, f"eth{i}", opts.get("ip"), opts.get("mac")
            )
        mappings = []
        if cfg["publish"] or cfg["publish_all"]:
            from containerlab.network import nat  # the firewall's code: only for ports

            mappings = [nat.parse_publish(p) for p in cfg["publish"]]
        if cfg["publish_all"]:
            mappings += exposed_ports(record)
        if mappings:
            first = next(iter(endpoints.values()))["ip"].split("/")[0]
            ports = [str(m) for m in nat.publish(record.id, mappings, first)]
        _write_endpoints(record, endpoints, ports)
    except BaseException:
        unplug(record)
        raise
    _refresh_hosts(list(endpoints), also=record)


def _leftovers(record: state.Record) -> bool:
    """Whether a previous start of this container left endpoints behind (cheap to ask)."""
    from containerlab.network import ipam

    if (record.dir / "network.json").exists():
        return True
    return any(record.id in ipam.allocations(n) for n in _netcfg(record)["networks"])


def exposed_ports(record: state.Record) -> list:
    """``-P``: every port the image EXPOSEs, each on a random host port."""
    from containerlab.image.store import Store
    from containerlab.network import nat

    config = Store().image(record.config["image_digest"]).run_config
    return [
        nat.PortMapping(None, 0, int(port), proto or "tcp")
        for spec in sorted(config.get("ExposedPorts") or {})
        for port, _, proto in [spec.partition("/")]
    ]


def unplug(record: state.Record, *, exited: bool = False) -> None:
    """Undo :func:`plug`: rules, veths (if the namespace still holds them), addresses.

    Idempotent, and safe on a record whose start was cut short at any point: everything is
    found from the container's id, not from what the start managed to write down.
    ``exited``: the container's processes have ended; its veths go with its namespace.
    """
    cfg = _netcfg(record)
    if cfg["mode"] == "container":
        with contextlib.suppress(FileNotFoundError):
            (_guests(cfg["container"]) / record.id).unlink()
    if cfg["mode"] != "bridge":
        return
    from containerlab.network import networks

    publishes = bool(cfg["publish"] or cfg["publish_all"])
    if not publishes and not _leftovers(record):
        return  # nothing held (already unplugged): no netlink or firewall work
    if publishes:
        from containerlab.network import nat

        with contextlib.suppress(NetworkError):
            nat.remove(record.id)
    names = list(cfg["networks"]) + [n for n in _endpoints(record) if n not in cfg["networks"]]
    # A guest holds our namespace, and with it our veths. (A guest killed with its
    # supervisor leaves its mark behind: then a veth is deleted that needed no deleting.)
    shared = exited and _guests(record.id).is_dir() and any(_guests(record.id).iterdir())
    for name in names:
        with contextlib.suppress(NetworkError):
            networks.disconnect(name, record.id, exited=exited, shared=shared)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record.dir / "network.json")
    _refresh_hosts(names)


# --- what inspect and ps show ------------------------------------------------------------------
def settings(record: state.Record) -> dict[str, Any]:
    """``NetworkSettings`` as ``docker inspect`` shows it (addresses only while running)."""
    cfg = _netcfg(record)
    try:
        with open(record.dir / "network.json") as f:
            live = json.load(f)
    except (OSError, ValueError):
        live = {"endpoints": {}, "ports": []}
    nets = {}
    for name, ep in live["endpoints"].items():
        ip, _, prefix = ep["ip"].partition("/")
        nets[name] = {
            "IPAddress": ip,
            "IPPrefixLen": int(prefix or 0),
            "Gateway": ep.get("gateway") or "",
            "MacAddress": ep.get("mac") or "",
            "Aliases": (cfg["networks"].get(name) or {}).get("aliases", []),
            "EndpointID": ep.get("veth", ""),
        }
    first = next(iter(nets.values()), {})
    return {
        "NetworkMode": mode_name(cfg),
        "IPAddress": first.get("IPAddress", ""),
        "Gateway": first.get("Gateway", ""),
        "MacAddress": first.get("MacAddress", ""),
        "Ports": live["ports"],
        "Networks": nets,
    }


def mode_name(cfg: dict[str, Any]) -> str:
    """What ``--network`` said: a network's name, none, host or container:ID."""
    if cfg["mode"] == "container":
        return f"container:{cfg.get('container', '')}"
    if cfg["mode"] == "bridge":
        return next(iter(cfg["networks"]), DEFAULT)
    return cfg["mode"]


def ports_column(record: state.Record) -> str:
    """The PORTS column of ``ps``: ``0.0.0.0:8080->80/tcp``."""
    if not record.running:
        return ""
    from containerlab.network import nat

    mappings = [nat.parse_publish(text) for text in settings(record)["Ports"]]
    return ", ".join(
        f"{m.host_ip or '0.0.0.0'}:{m.host_port}->{m.container_port}/{m.proto}" for m in mappings
    )


# --- network connect / disconnect ----------------------------------------------------------
def connect(
    name_or_id: str, network: str, ip: str | None = None, aliases: tuple[str, ...] = ()
) -> state.Record:
    """``network connect NET CONTAINER``: recorded, and plugged in now if it runs.

    The next free ``ethN`` is used; a stopped container gets it at its next start.
    """
    from containerlab.network import networks

    cid = state.resolve(name_or_id)
    if network == DEFAULT:
        networks.ensure_default()
    else:
        networks.get(network)
    rec = state.load(cid)
    cfg = _netcfg(rec)
    if cfg["mode"] != "bridge":
        raise NetworkError(
            f"container {rec.name} runs with --network {cfg['mode']}: it cannot join"
            " another network"
        )
    if network in cfg["networks"]:
        raise NetworkError(f"container {rec.name} is already connected to {network!r}")
    if (ip or aliases) and network == DEFAULT:
        raise NetworkError("--ip and --alias need a user-defined network, as in Docker")
    nets = {**cfg["networks"], network: {"ip": ip, "aliases": list(aliases)}}
    # Recorded before anything is plugged in: `rm` finds it even if this is cut short.
    rec = state.set_config(cid, {**rec.config, "network": {**cfg, "networks": nets}})
    rec = state.refresh(rec)
    if rec.running:
        endpoints = _endpoints(rec)
        ifname = f"eth{_free_index(endpoints)}"
        try:
            endpoints[network] = _connect_one(rec, network, rec.state.pid, ifname, ip)
        except BaseException:
            _forget_network(cid, network)
            raise
        _write_endpoints(rec, endpoints, settings(rec)["Ports"])
        _refresh_hosts(list(endpoints), also=rec)
    return rec


def _free_index(endpoints: dict[str, dict]) -> int:
    used = {int(ep["ifname"][3:]) for ep in endpoints.values() if ep["ifname"][3:].isdigit()}
    return next(i for i in range(len(used) + 1) if i not in used)


def _forget_network(cid: str, network: str) -> state.Record:
    rec = state.load(cid)
    cfg = _netcfg(rec)
    nets = {k: v for k, v in cfg["networks"].items() if k != network}
    return state.set_config(cid, {**rec.config, "network": {**cfg, "networks": nets}})


def disconnect(name_or_id: str, network: str) -> state.Record:
    """``network disconnect NET CONTAINER``: unplugged now if it runs, and forgotten."""
    from containerlab.network import networks

    cid = state.resolve(name_or_id)
    rec = state.load(cid)
    if network not in _netcfg(rec)["networks"]:
        raise NetworkError(f"container {rec.name} is not connected to network {network!r}")
    endpoints = _endpoints(rec)
    networks.disconnect(network, cid)
    if network in endpoints:
        del endpoints[network]
        _write_endpoints(rec, endpoints, settings(rec)["Ports"])
    rec = _forget_network(cid, network)
    _refresh_hosts([network, *endpoints], also=rec)
    return rec


def held(record: state.Record) -> str:
    """What a container holds on the networks, in words ("" if nothing): for ``doctor``,
    which asks this of containers that are not running."""
    from containerlab.network import ipam

    cfg = _netcfg(record)
    if cfg["mode"] != "bridge":
        return ""
    addresses = [
        f"{ip} on {net}"
        for net in cfg["networks"]
        for owner, ip in ipam.allocations(net).items()
        if owner == record.id
    ]
    ports = [p for p in settings(record)["Ports"]]
    what = [f"address {a}" for a in addresses] + [f"published port {p}" for p in ports]
    return ", ".join(what)

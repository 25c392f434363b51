"""Networks: a bridge, a subnet, its address pool and its NAT rules, under one name.

``docker network create`` in kernel terms: a Linux bridge with the gateway address on it, an
IPAM pool for the subnet, masquerade out of it, and isolation from every other network.
The record of each network is a JSON file under the state root (so ``ls`` works without
any bridge up); :func:`up` (re)builds the kernel side from the record, which is also how
networks come back after a reboot empties the kernel's tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from containerlab import paths
from containerlab.errors import NetworkError
from containerlab.hashing import sha256_hex
from containerlab.network import ipam, links

#: The network a container joins when none is named (Docker's "bridge", on docker0).
DEFAULT_NETWORK = "bridge"
#: Its subnet: 172.30/16 is inside RFC 1918's 172.16/12 but away from Docker's 172.17-172.29
#: and from the 10/8 and 192.168/16 ranges that home and cloud networks use most.
DEFAULT_SUBNET = "172.30.0.0/16"
#: User networks get a free /24 from here (256 networks), right after the default one.
POOL = "172.31.0.0/16"
POOL_PREFIX = 24
#: Names that mean something else to `--network`.
RESERVED = {"host", "none", "default", DEFAULT_NETWORK}


@dataclass(frozen=True)
class Network:
    """One network as recorded under the state root."""

    name: str  # what the user calls it ("bridge" for the default network)
    bridge: str  # the Linux bridge on the host (clab0, clab-NAME cut to 15 characters)
    subnet: str  # the IPv4 subnet, "172.31.3.0/24"
    gateway: str  # the bridge's own address, the containers' default route (.1)
    internal: bool = False  # True: no masquerade, no traffic in or out but through the bridge

    @property
    def owner(self) -> str:
        """The owner id its NAT rules carry, so they go with the network. By bridge, not by
        name: two state roots each have a network "bridge" (on bridges of their own), and one
        root's `network rm` must never take the other's rules."""
        return f"network:{self.bridge}"


def _dir() -> Path:
    return paths.state_root() / "network" / "networks"


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialise create/remove: two creates must not both pick the same free subnet."""
    _dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(_dir() / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(net: Network) -> None:
    tmp = _dir() / f".{net.name}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(net), indent=2))
    os.replace(tmp, _dir() / f"{net.name}.json")


def ls() -> list[Network]:
    """Every network recorded under the state root, by name."""
    if not _dir().is_dir():
        return []
    return [Network(**json.loads(p.read_text())) for p in sorted(_dir().glob("*.json"))]


def get(name: str) -> Network:
    """The network called ``name``; NetworkError naming `network ls` if there is none."""
    path = _dir() / f"{name}.json"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not path.exists():
        raise NetworkError(f"network {name!r} not found; see `containerlab network ls`")
    return Network(**json.loads(path.read_text()))


def inspect(name: str) -> dict:
    """A network with its endpoints (owner -> address) and whether its bridge is up."""
    net = get(name)
    return {
        **dataclasses.asdict(net),
        "endpoints": ipam.allocations(name),
        "bridge_present": links.link_exists(net.bridge),
    }


def _overlaps(subnet: ipaddress.IPv4Network, exclude: str | None = None) -> str | None:
    """What ``subnet`` would clash with: another network, or the host's addresses/routes."""
    for other in ls():
        if other.name != exclude and subnet.overlaps(ipaddress.IPv4Network(other.subnet)):
            return f"network {other.name!r} ({other.subnet})"
    for used in links.host_networks():
        if subnet.overlaps(used):
            return f"the host's route or address {used}"
    return None


def _pick_subnet() -> ipaddress.IPv4Network:
    for candidate in ipaddress.IPv4Network(POOL).subnets(new_prefix=POOL_PREFIX):
        if _overlaps(candidate) is None:
            return candidate
    raise NetworkError(f"no free /{POOL_PREFIX} left in {POOL}; remove a network or pass --subnet")


def _nat():
    # The firewall code (nft, iptables, subprocess) is loaded only when a network's rules
    # change: a container start on an existing network needs none of it.
    from containerlab.network import nat

    return nat


def up(net: Network) -> None:
    """Build (or rebuild) a network's kernel side: bridge, address, sysctls, NAT rules.

    Idempotent: the rules are replaced, the bridge kept if present.
    """
    prefix = ipaddress.IPv4Network(net.subnet).prefixlen
    links.create_bridge(net.bridge, f"{net.gateway}/{prefix}")
    # See nat.py: lets DNAT'ed loopback connections leave through this bridge. Per bridge,
    # so it goes away with it and never changes how the rest of the host treats 127/8.
    links.set_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
    nat = _nat()
    nat.remove(net.owner)
    nat.add_rules(nat.network_rules(net.owner, net.bridge, net.subnet, net.internal))
    if not net.internal:
        nat.enable_ip_forward()


def down(net: Network) -> None:
    """Remove a network's kernel side (rules, bridge); its record stays."""
    _nat().remove(net.owner)
    links.delete_link(net.bridge)


def create(
    name: str, subnet: str | None = None, *, internal: bool = False, gateway: str | None = None
) -> Network:
    """``network create``: record a network, start its address pool, bring it up.

    Without ``subnet`` a free /24 of :data:`POOL` is picked that overlaps neither another
    network nor anything the host routes; an explicit one that overlaps is refused.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise NetworkError(
            f"invalid network name {name!r}: letters, digits and _.- only, starting with a"
            " letter or digit"
        )
    if name in RESERVED:
        raise NetworkError(f"network name {name!r} is reserved; pick another name")
    with _lock():
        if (_dir() / f"{name}.json").exists():
            raise NetworkError(f"network {name!r} already exists; see `containerlab network ls`")
        bridge = links.bridge_name(name)
        clash = next((n for n in ls() if n.bridge == bridge), None)
        if clash is not None:
            raise NetworkError(
                f"network {name!r} would use bridge {bridge}, which network {clash.name!r}"
                " already uses (names are cut to 15 characters); pick a shorter name"
            )
        if links.link_exists(bridge):
            raise NetworkError(
                f"network {name!r} would use bridge {bridge}, which already exists on this host"
                " (a network of another state root, CONTAINERLAB_ROOT, or a leftover: see"
                " `containerlab system doctor`); pick another name"
            )
        if subnet is not None:
            try:
                net_ = ipaddress.IPv4Network(subnet)
            except ValueError as e:
                raise NetworkError(f"invalid subnet {subnet!r}: {e}") from None
            what = _overlaps(net_)
            if what is not None:
                raise NetworkError(
                    f"subnet {net_} overlaps {what}; pick another --subnet or leave it out"
                )
        else:
            net_ = _pick_subnet()
        gw = gateway or str(net_.network_address + 1)
        net = Network(name, bridge, str(net_), gw, internal)
        ipam.create_pool(name, net.subnet, net.gateway)
        _save(net)
        try:
            up(net)
        except BaseException:
            _forget(net)
            raise
    return net


def _forget(net: Network) -> None:
    down(net)
    ipam.delete_pool(net.name)
    with contextlib.suppress(FileNotFoundError):
        (_dir() / f"{net.name}.json").unlink()
    _nat().restore_ip_forward()  # if no network of any state root routes out any more


def remove(name: str) -> None:
    """``network rm``: refused while containers are attached; removes rules, bridge, record."""
    with _lock():
        net = get(name)
        attached = ipam.allocations(name)
        if attached:
            raise NetworkError(
                f"network {name!r} has {len(attached)} attached endpoint(s)"
                f" ({', '.join(sorted(attached))}); remove or disconnect them first"
            )
        _forget(net)


def prune(*, keep_default: bool) -> list[str]:
    """Remove every network no container is attached to; the names removed.

    ``network prune`` keeps the default one (as Docker's does); ``system prune`` does not:
    it comes back on the next ``run``, and until then the host has no bridge of ours.
    """
    removed = []
    for net in ls():
        if keep_default and net.name == DEFAULT_NETWORK:
            continue
        with contextlib.suppress(NetworkError):  # endpoints attached (maybe just now): kept
            remove(net.name)
            removed.append(net.name)
    return removed


def default_shape() -> tuple[str, str]:
    """The default network's bridge and subnet: clab0 on 172.30/16 for the machine's state
    root (``/var/lib/containerlab``, the lab's). Another root (each test's, a second lab)
    gets a bridge named after it and a free /24, so two roots never fight over clab0.
    """
    if str(paths.state_root()) == paths.DEFAULT_ROOT:
        return links.DEFAULT_BRIDGE, DEFAULT_SUBNET
    digest = sha256_hex(str(paths.state_root()).encode())
    return f"{links.DEFAULT_BRIDGE}-{digest[:8]}", ""


def bridge_of(name: str) -> str:
    """The bridge a network of this name has (or would have) under this state root."""
    return default_shape()[0] if name == DEFAULT_NETWORK else links.bridge_name(name)


def ensure_default() -> Network:
    """The default network, created on first use (and brought up again after a reboot)."""
    with _lock():
        path = _dir() / f"{DEFAULT_NETWORK}.json"
        if path.exists():
            net = get(DEFAULT_NETWORK)
            if not links.link_exists(net.bridge):
                up(net)
            return net
        bridge, wanted = default_shape()
        if links.link_exists(bridge):
            # Named after this state root, so ours: a leftover of a root that was deleted
            # without `network rm` (a notebook's scratch directory, a crash). Reclaimed if
            # nothing is plugged into it; refused if something is.
            ports = os.listdir(f"/sys/class/net/{bridge}/brif")
            if ports:
                raise NetworkError(
                    f"bridge {bridge} exists with {', '.join(sorted(ports))} plugged in, but"
                    f" this state root ({paths.state_root()}) has no record of it; stop what"
                    f" uses it, then `ip link del {bridge}`"
                )
            links.delete_link(bridge)
        if wanted:
            subnet = ipaddress.IPv4Network(wanted)
            what = _overlaps(subnet)
            if what is not None:
                raise NetworkError(
                    f"the default network's subnet {subnet} overlaps {what}; remove that route"
                    " or run containers on a user network (`network create`)"
                )
        else:
            subnet = _pick_subnet()
        net = Network(DEFAULT_NETWORK, bridge, str(subnet), str(subnet[1]))
        ipam.create_pool(net.name, net.subnet, net.gateway)
        _save(net)
        try:
            up(net)
        except BaseException:
            _forget(net)
            raise
        return net


@contextlib.contextmanager
def network(name: str, subnet: str | None = None, *, internal: bool = False) -> Iterator[Network]:
    """A network for the duration of a ``with`` block (notebooks, tests)."""
    net = create(name, subnet, internal=internal)
    try:
        yield net
    finally:
        remove(name)


# --- endpoints --------------------------------------------------------------------------------
def connect(
    name: str,
    owner: str,
    target: int | str,
    ip: str | None = None,
    ifname: str = links.CONTAINER_IFNAME,
    default_route: bool = True,
    mac: str | None = None,
) -> links.Endpoint:
    """``network connect``: give ``owner`` an address on ``name`` and plug namespace
    ``target`` (a pid or netns name) into its bridge as ``ifname`` (``eth0``). The address
    goes back if the plugging fails. Only one interface can hold the default route: a
    second network (``eth1``) reaches its own subnet only, as in Docker. ``mac``: the
    container end's MAC address (``--mac-address``); else the kernel picks a random one."""
    net = get(name)
    if not links.link_exists(net.bridge):
        up(net)
    veth = links.veth_name(owner, name)
    if links.link_exists(veth) and not links.wait_gone(veth, timeout=0.05):
        # The last start's veth, going with its namespace (a restart within milliseconds
        # of the exit), is waited for; a leftover of a crash is deleted.
        links.delete_link(veth)
    address = ipam.allocate(name, owner, ip)
    try:
        return links.attach(
            net.bridge,
            target,
            str(address),
            net.gateway if default_route else None,
            veth,
            ifname,
            mac,
        )
    except BaseException:
        ipam.release(name, owner)
        raise


def disconnect(name: str, owner: str, *, exited: bool = False, shared: bool = False) -> None:
    """``network disconnect`` (and ``rm``): remove the veth and give the address back.

    ``exited``: the owner's processes have all ended, so the kernel is destroying its network
    namespace, and the veth with it: the veth is left to the kernel. Deleting it here would
    wait for the same teardown (about 10 ms, RCU grace periods), on every container exit.
    Nothing can keep that namespace alive, and the address is not handed out again until the
    pool comes round (serial allocation, see ``ipam``). Unless ``shared``: another container
    holds the namespace (``--network container:``), which would keep the veth, and the
    owner's address in it, on the bridge; then it is deleted.
    """
    if not exited or shared:
        links.delete_link(links.veth_name(owner, name))
    ipam.release(name, owner)


@contextlib.contextmanager
def endpoint(
    name: str, owner: str, target: int | str, ip: str | None = None
) -> Iterator[links.Endpoint]:
    """:func:`connect` for a ``with`` block; disconnected at the end."""
    ep = connect(name, owner, target, ip)
    try:
        yield ep
    finally:
        disconnect(name, owner)

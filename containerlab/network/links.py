"""Links: a Linux bridge per network and a veth pair per container endpoint, over netlink.

A bridge is a virtual switch inside the kernel; a veth pair is a virtual cable whose two
ends can live in different network namespaces. A container's network is one veth end moved
into its namespace (renamed ``eth0``), the other end plugged into the bridge on the host,
and the bridge holding the gateway address the container routes through.

Everything here speaks netlink through pyroute2's synchronous ``IPRoute``. Since 0.9 that
class runs an asyncio loop of its own, which fails with "This event loop is already running"
when the calling thread already runs one (a Jupyter kernel): :func:`_sync` then runs the
call in a worker thread, which has no loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from containerlab import syscalls
from containerlab.errors import NetworkError

T = TypeVar("T")

#: Linux limits interface names to 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAMSIZ = 15
#: The bridge of the default network, as docker0 is Docker's.
DEFAULT_BRIDGE = "clab0"
#: The name the container end of a veth gets inside the container.
CONTAINER_IFNAME = "eth0"


def _sync(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous pyroute2 call, in a worker thread when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def bridge_name(network: str) -> str:
    """The bridge of a network: ``clab0`` for the default one, else ``clab-NAME`` cut to 15."""
    if network == "bridge":
        return DEFAULT_BRIDGE
    return f"clab-{network}"[:IFNAMSIZ]


def veth_name(owner: str, network: str = "") -> str:
    """A stable host-side veth name for an endpoint: ``clab`` and 11 hex digits of a hash.

    Container ids are longer than 15 bytes and two endpoints of one container (two networks)
    need two names, so the name is a hash of both rather than a truncation.
    """
    digest = hashlib.sha256(f"{owner}\0{network}".encode()).hexdigest()
    return f"clab{digest[: IFNAMSIZ - 4]}"


def netns_path(target: int | str) -> str:
    """The file naming a network namespace: ``/proc/PID/ns/net`` for a pid, or a named netns
    (``ip netns add NAME`` makes ``/run/netns/NAME``), or a path given as is."""
    if isinstance(target, int):
        path = f"/proc/{target}/ns/net"
    elif target.startswith("/"):
        path = target
    else:
        path = f"/run/netns/{target}"
    if not os.path.exists(path):
        raise NetworkError(
            f"network namespace {target!r} not found ({path}); is the process still running?"
        )
    return path


def _nl_error(what: str, e: NetlinkError) -> NetworkError:
    return NetworkError(f"{what}: {os.strerror(e.code)} (netlink error {e.code})")


# --- queries ----------------------------------------------------------------------------------
def _link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str, netns: int | str | None = None) -> bool:
    """Whether an interface ``name`` exists (on the host, or in a namespace)."""

    def go() -> bool:
        kw = {"netns": netns_path(netns), "flags": 0} if netns is not None else {}
        with IPRoute(**kw) as ipr:
            return _link_index(ipr, name) is not None

    return _sync(go)


def clab_links() -> list[str]:
    """Every host interface whose name starts with ``clab`` (for leak checks and doctor)."""

    def go() -> list[str]:
        with IPRoute() as ipr:
            names = [link.get("ifname") for link in ipr.get_links()]
        return sorted(n for n in names if n and n.startswith("clab"))

    return _sync(go)


def host_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the host already uses: its addresses' subnets and its routes.

    Default routes are left out (they cover everything); so are the local and broadcast
    routes of the local table (``table=254`` keeps the main table only).
    """

    def go() -> list[ipaddress.IPv4Network]:
        out: set[ipaddress.IPv4Network] = set()
        with IPRoute() as ipr:
            for addr in ipr.get_addr(family=2):
                ip = addr.get("IFA_ADDRESS") or addr.get_attr("IFA_ADDRESS")
                if ip and not ip.startswith("127."):
                    out.add(ipaddress.IPv4Network(f"{ip}/{addr['prefixlen']}", strict=False))
            for route in ipr.get_routes(family=2, table=254):
                dst = route.get("RTA_DST") or route.get_attr("RTA_DST")
                if dst and route["dst_len"] > 0:
                    out.add(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        return sorted(out)

    return _sync(go)


# --- bridges ----------------------------------------------------------------------------------
def create_bridge(name: str, address: str | None = None) -> None:
    """Create bridge ``name`` (up), with ``address`` ("172.30.0.1/16") on it if given.

    Idempotent: an existing bridge is brought up and given the address if it lacks it, so a
    network whose bridge vanished (a reboot) can be brought back with the same call.
    """
    if not name.startswith("clab") or len(name) > IFNAMSIZ:
        raise NetworkError(
            f"bridge name {name!r} must start with 'clab' and have at most {IFNAMSIZ} characters"
        )
    iface = ipaddress.IPv4Interface(address) if address else None

    def go() -> None:
        with IPRoute() as ipr:
            idx = _link_index(ipr, name)
            if idx is None:
                try:
                    ipr.link("add", ifname=name, kind="bridge")
                except NetlinkError as e:
                    raise _nl_error(f"cannot create bridge {name}", e) from None
                idx = _link_index(ipr, name)
            if iface is not None:
                have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
                if str(iface.ip) not in have:
                    ipr.addr(
                        "add",
                        index=idx,
                        address=str(iface.ip),
                        prefixlen=iface.network.prefixlen,
                        broadcast=str(iface.network.broadcast_address),
                    )
            ipr.link("set", index=idx, state="up")

    syscalls.explain(
        f"create bridge {name}",
        f"ip link add {name} type bridge"
        + (f" && ip addr add {address} dev {name}" if address else "")
        + f" && ip link set {name} up",
    )
    _sync(go)


def delete_link(name: str) -> bool:
    """Delete host interface ``name`` (a bridge, or a veth and its peer); False if absent."""

    def go() -> bool:
        with IPRoute() as ipr:
            idx = _link_index(ipr, name)
            if idx is None:
                return False
            try:
                ipr.link("del", index=idx)
            except NetlinkError as e:
                if e.code == errno.ENODEV:  # gone meanwhile (its namespace died)
                    return False
                raise _nl_error(f"cannot delete link {name}", e) from None
            return True

    syscalls.explain(f"delete link {name}", f"ip link del {name}")
    return _sync(go)


@contextlib.contextmanager
def bridge(name: str, address: str | None = None) -> Iterator[str]:
    """A bridge for the duration of a ``with`` block; removed at the end if this made it."""
    existed = link_exists(name)
    create_bridge(name, address)
    try:
        yield name
    finally:
        if not existed:
            delete_link(name)


# --- endpoints (veth pairs) -------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """One container's attachment to a bridge: a veth pair, addressed and routed."""

    host_ifname: str  # the host end, plugged into the bridge (clab + hash)
    bridge: str  # the bridge the host end is a port of
    netns: str  # the file naming the container's network namespace
    ifname: str  # the container end's name inside its namespace (eth0)
    address: str  # the container's address with prefix, "172.30.0.2/16"
    gateway: str | None  # the default route's next hop (the bridge address); None: no route
    mac: str  # the container end's MAC address, for inspect


def attach(
    bridge_ifname: str,
    target: int | str,
    address: str,
    gateway: str | None,
    host_ifname: str,
    ifname: str = CONTAINER_IFNAME,
) -> Endpoint:
    """Plug namespace ``target`` (a pid or a netns name) into a bridge with a veth pair.

    The peer is created straight inside the namespace (no rename race on the host), renamed
    ``ifname``, given ``address``, brought up with ``lo``, and routed via ``gateway``. On
    any failure the pair is deleted again (deleting one end deletes both).
    """
    path = netns_path(target)
    iface = ipaddress.IPv4Interface(address)
    if not host_ifname.startswith("clab") or len(host_ifname) > IFNAMSIZ:
        raise NetworkError(f"veth name {host_ifname!r}: must start with 'clab', at most 15 chars")

    def go() -> Endpoint:
        fd = os.open(path, os.O_RDONLY)
        try:
            with IPRoute() as ipr:
                br = _link_index(ipr, bridge_ifname)
                if br is None:
                    raise NetworkError(
                        f"bridge {bridge_ifname} does not exist; create its network first"
                    )
                if _link_index(ipr, host_ifname) is not None:
                    raise NetworkError(
                        f"link {host_ifname} already exists; is this endpoint already attached?"
                    )
                # The peer is born inside the namespace under its final name: it never
                # exists on the host, so two containers' "eth0" cannot clash there.
                try:
                    ipr.link(
                        "add",
                        ifname=host_ifname,
                        kind="veth",
                        peer={"ifname": ifname, "net_ns_fd": fd},
                    )
                except NetlinkError as e:
                    raise _nl_error(f"cannot create veth {host_ifname}", e) from None
                idx = _link_index(ipr, host_ifname)
                ipr.link("set", index=idx, master=br, state="up")
        finally:
            os.close(fd)
        try:
            with IPRoute(netns=path, flags=0) as ns:
                lo = _link_index(ns, "lo")
                if lo is not None:
                    ns.link("set", index=lo, state="up")
                idx = _link_index(ns, ifname)
                if idx is None:
                    raise NetworkError(f"{ifname} did not appear in namespace {path}")
                ns.addr(
                    "add",
                    index=idx,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    broadcast=str(iface.network.broadcast_address),
                )
                ns.link("set", index=idx, state="up")
                if gateway:
                    ns.route("add", dst="0.0.0.0/0", gateway=gateway)
                mac = ns.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        except BaseException:
            delete_link(host_ifname)
            raise
        return Endpoint(host_ifname, bridge_ifname, path, ifname, str(iface), gateway, mac)

    syscalls.explain(
        f"connect {path} to {bridge_ifname}",
        f"ip link add {host_ifname} type veth peer name {ifname} netns {path}"
        f" && ip link set {host_ifname} master {bridge_ifname} up"
        f" && nsenter --net={path} sh -c 'ip link set lo up; ip addr add {address} dev {ifname};"
        f" ip link set {ifname} up"
        + (f"; ip route add default via {gateway}'" if gateway else "'"),
    )
    try:
        return _sync(go)
    except NetlinkError as e:
        delete_link(host_ifname)
        raise _nl_error(f"cannot configure {ifname} in {path}", e) from None


def detach(endpoint: Endpoint | str) -> bool:
    """Remove an endpoint's veth pair (by its host end); False if it was already gone.

    When the namespace dies the kernel deletes its veth end and the peer with it, so a
    missing link is not an error.
    """
    name = endpoint.host_ifname if isinstance(endpoint, Endpoint) else endpoint
    return delete_link(name)


@contextlib.contextmanager
def veth_pair(
    bridge_ifname: str,
    target: int | str,
    address: str,
    gateway: str | None,
    host_ifname: str,
    ifname: str = CONTAINER_IFNAME,
) -> Iterator[Endpoint]:
    """:func:`attach` for the duration of a ``with`` block; the pair is deleted at the end."""
    endpoint = attach(bridge_ifname, target, address, gateway, host_ifname, ifname)
    try:
        yield endpoint
    finally:
        detach(endpoint)


def set_sysctl(path: str, value: str) -> str:
    """Write ``/proc/sys/PATH`` and return what it held before ("net/ipv4/ip_forward")."""
    full = f"/proc/sys/{path}"
    try:
        with open(full) as f:
            old = f.read().strip()
    except OSError as e:
        raise NetworkError(f"cannot read {full}: {e.strerror}; is this a Linux host?") from None
    if old != value:
        syscalls.write_file(full, value)
    return old

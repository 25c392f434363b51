"""Links: a Linux bridge per network and a veth pair per container endpoint, over netlink.

A bridge is a virtual switch inside the kernel; a veth pair is a virtual cable whose two
ends can live in different network namespaces. A container's network is one veth end moved
into its namespace (renamed ``eth0``), the other end plugged into the bridge on the host,
and the bridge holding the gateway address the container routes through.

Everything here speaks netlink through :mod:`containerlab.network.netlink`, a small
hand-written rtnetlink client (a raw socket and ``struct``): no event loop, so it works the
same in a script and in a Jupyter kernel whose thread runs one, and it imports in about a
millisecond where pyroute2 took some 150, which matters on every ``containerlab run``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from containerlab import syscalls
from containerlab.errors import NetworkError
from containerlab.hashing import sha256_hex
from containerlab.network import netlink

#: Linux limits interface names to 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAMSIZ = 15
#: The bridge of the default network, as docker0 is Docker's.
DEFAULT_BRIDGE = "clab0"
#: The name the container end of a veth gets inside the container.
CONTAINER_IFNAME = "eth0"


def bridge_name(network: str) -> str:
    """The bridge of a user network: ``clab-NAME`` cut to 15 characters (the default
    network's is ``networks.default_shape``'s: clab0, or one per state root)."""
    return f"clab-{network}"[:IFNAMSIZ]


def veth_name(owner: str, network: str = "") -> str:
    """A stable host-side veth name for an endpoint: ``clab`` and 11 hex digits of a hash.

    Container ids are longer than 15 bytes and two endpoints of one container (two networks)
    need two names, so the name is a hash of both rather than a truncation.
    """
    digest = sha256_hex(f"{owner}\0{network}".encode())
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


def _nl_error(what: str, e: OSError) -> NetworkError:
    return NetworkError(f"{what}: {os.strerror(e.errno or 0)} (netlink error {e.errno})")


# --- queries ----------------------------------------------------------------------------------
def _link_index(nl: netlink.Netlink, name: str) -> int | None:
    link = netlink.get_link(nl, name)
    return link.index if link else None


def link_exists(name: str, netns: int | str | None = None) -> bool:
    """Whether an interface ``name`` exists (on the host, or in a namespace)."""
    with netlink.Netlink(netns_path(netns) if netns is not None else None) as nl:
        return _link_index(nl, name) is not None


def clab_links() -> list[str]:
    """Every host interface whose name starts with ``clab`` (for leak checks and doctor)."""
    with netlink.Netlink() as nl:
        names = [link.name for link in netlink.list_links(nl)]
    return sorted(n for n in names if n.startswith("clab"))


def host_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the host already uses: its addresses' subnets and its routes.

    Default routes are left out (they cover everything); so are the local and broadcast
    routes of the local table (only the main table's routes count).
    """
    out: set[ipaddress.IPv4Network] = set()
    with netlink.Netlink() as nl:
        for addr in netlink.list_addresses(nl):
            if not addr.address.startswith("127."):
                out.add(ipaddress.IPv4Network(f"{addr.address}/{addr.prefixlen}", strict=False))
        for route in netlink.list_routes(nl, netlink.RT_TABLE_MAIN):
            if route.dst and route.prefixlen > 0:
                out.add(ipaddress.IPv4Network(f"{route.dst}/{route.prefixlen}", strict=False))
    return sorted(out)


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

    syscalls.explain(
        f"create bridge {name}",
        f"ip link add {name} type bridge"
        + (f" && ip addr add {address} dev {name}" if address else "")
        + f" && ip link set {name} up",
    )
    with netlink.Netlink() as nl:
        idx = _link_index(nl, name)
        if idx is None:
            try:
                netlink.add_bridge(nl, name)
            except netlink.NetlinkError as e:
                raise _nl_error(f"cannot create bridge {name}", e) from None
            idx = _link_index(nl, name)
            if idx is None:
                raise NetworkError(f"bridge {name} vanished as it was made; try again")
        try:
            if iface is not None:
                have = {a.address for a in netlink.list_addresses(nl) if a.index == idx}
                if str(iface.ip) not in have:
                    netlink.add_address(nl, idx, iface)
            netlink.set_link(nl, idx, up=True)
        except netlink.NetlinkError as e:
            raise _nl_error(f"cannot configure bridge {name}", e) from None


def wait_gone(name: str, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for host interface ``name`` to vanish; True if it did.

    A veth pair dies with either end: once the last process of a container's network
    namespace has exited, the kernel destroys the namespace and, with it, the container's
    end and the host's, in a worker of its own, some 10 ms later here (RCU grace periods).
    A container started again within that time finds its last veth still there, and waits.
    """
    deadline = time.monotonic() + timeout
    with netlink.Netlink() as nl:
        while _link_index(nl, name) is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
    syscalls.explain(
        f"veth {name} went with the container's network namespace (the kernel deleted it)"
    )
    return True


def delete_link(name: str) -> bool:
    """Delete host interface ``name`` (a bridge, or a veth and its peer); False if absent."""
    syscalls.explain(f"delete link {name}", f"ip link del {name}")
    if len(name.encode()) > IFNAMSIZ:
        return False  # no interface can have that name
    with netlink.Netlink() as nl:
        try:
            netlink.delete_link(nl, name)
        except netlink.NetlinkError as e:
            if e.errno == errno.ENODEV:  # absent, or gone meanwhile (its namespace died)
                return False
            raise _nl_error(f"cannot delete link {name}", e) from None
    return True


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


def _configure_inside(
    netns_fd: int, path: str, ifname: str, iface: ipaddress.IPv4Interface, gateway: str | None
) -> str:
    """Inside the namespace: ``lo`` up, the address on ``ifname``, it up, the default route.

    Returns the interface's MAC address.
    """
    with netlink.Netlink(netns_fd) as ns:
        lo = _link_index(ns, "lo")
        if lo is not None:
            netlink.set_link(ns, lo, up=True)
        link = netlink.get_link(ns, ifname)
        if link is None:
            raise NetworkError(f"{ifname} did not appear in namespace {path}")
        netlink.add_address(ns, link.index, iface)
        netlink.set_link(ns, link.index, up=True)
        if gateway:
            netlink.add_default_route(ns, gateway)
        return link.mac or ""  # a veth's MAC is random, made with it, and does not change


def attach(
    bridge_ifname: str,
    target: int | str,
    address: str,
    gateway: str | None,
    host_ifname: str,
    ifname: str = CONTAINER_IFNAME,
    mac: str | None = None,
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

    syscalls.explain(
        f"connect {path} to {bridge_ifname}",
        f"ip link add {host_ifname} type veth peer name {ifname} netns {path}"
        + (f" address {mac}" if mac else "")
        + f" && ip link set {host_ifname} master {bridge_ifname} up"
        f" && nsenter --net={path} sh -c 'ip link set lo up; ip addr add {address} dev {ifname};"
        f" ip link set {ifname} up"
        + (f"; ip route add default via {gateway}'" if gateway else "'"),
    )
    # One open file for both uses (the peer's destination, the socket inside): a pid's
    # /proc path opened twice could name two namespaces if the pid died and was reused.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with netlink.Netlink() as nl:
            br = _link_index(nl, bridge_ifname)
            if br is None:
                raise NetworkError(
                    f"bridge {bridge_ifname} does not exist; create its network first"
                )
            if _link_index(nl, host_ifname) is not None:
                raise NetworkError(
                    f"link {host_ifname} already exists; is this endpoint already attached?"
                )
            # The peer is born inside the namespace under its final name: it never
            # exists on the host, so two containers' "eth0" cannot clash there.
            try:
                netlink.add_veth(nl, host_ifname, ifname, fd, peer_mac=mac)
            except netlink.NetlinkError as e:
                raise _nl_error(f"cannot create veth {host_ifname}", e) from None
            try:
                idx = _link_index(nl, host_ifname)
                if idx is None:
                    raise NetworkError(f"veth {host_ifname} vanished as it was made; try again")
                netlink.set_link(nl, idx, master=br, up=True)
                mac = _configure_inside(fd, path, ifname, iface, gateway)
            except netlink.NetlinkError as e:
                delete_link(host_ifname)
                raise _nl_error(f"cannot configure {ifname} in {path}", e) from None
            except BaseException:
                delete_link(host_ifname)
                raise
    finally:
        os.close(fd)
    return Endpoint(host_ifname, bridge_ifname, path, ifname, str(iface), gateway, mac)


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

"""Netlink by hand: what ``ip link add`` actually sends to the kernel.

``ip`` (iproute2), Docker's libnetwork and pyroute2 all configure interfaces the same way:
they open a socket whose other end is the kernel (``AF_NETLINK``, protocol
``NETLINK_ROUTE``, "rtnetlink") and write binary requests into it. This module is such a
client in a few hundred lines of ``struct``, so each request can be read byte for byte.

A request is one message::

    nlmsghdr   16 bytes: total length, type (RTM_NEWLINK...), flags, sequence number, port id
    struct     the fixed part of the object: ifinfomsg (a link), ifaddrmsg (an address),
               rtmsg (a route)
    attributes type-length-value records (rtattr), each padded to 4 bytes; an attribute's
               value can itself be a list of attributes (nesting)

The kernel answers on the same socket. A change asked with ``NLM_F_ACK`` gets an
``NLMSG_ERROR`` message back whose error is 0 (the ack) or minus an errno; a question
(``RTM_GET*``) gets its answer first; a dump (``NLM_F_DUMP``: "all links") gets a stream of
messages, over several reads, closed by ``NLMSG_DONE``.

A netlink socket belongs to the network namespace it was created in, and every request on it
acts there. To configure a container's interfaces, :class:`Netlink` lets this thread enter
the container's namespace just long enough to create the socket, then come back.

Numbers and layouts are from ``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``,
``linux/if_addr.h`` and ``linux/veth.h``. Everything is in host byte order except IP
addresses, which travel in network order (what ``IPv4Address.packed`` gives).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections import namedtuple
from collections.abc import Iterator

from containerlab import syscalls

# --- message types ---------------------------------------------------------------------------
NLMSG_ERROR = 2  # an ack (error 0) or a refusal (minus an errno)
NLMSG_DONE = 3  # the end of a dump
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

_NAMES = {
    RTM_NEWLINK: "RTM_NEWLINK",
    RTM_DELLINK: "RTM_DELLINK",
    RTM_GETLINK: "RTM_GETLINK",
    RTM_SETLINK: "RTM_SETLINK",
    RTM_NEWADDR: "RTM_NEWADDR",
    RTM_GETADDR: "RTM_GETADDR",
    RTM_NEWROUTE: "RTM_NEWROUTE",
    RTM_GETROUTE: "RTM_GETROUTE",
}

# --- header flags ----------------------------------------------------------------------------
NLM_F_REQUEST = 0x01  # every message to the kernel is a request
NLM_F_MULTI = 0x02  # part of a multi-message answer (a dump)
NLM_F_ACK = 0x04  # answer even on success, so the caller knows it is done
NLM_F_DUMP_INTR = 0x10  # the objects changed during the dump: it may be inconsistent
NLM_F_DUMP = 0x300  # "all of them" (NLM_F_ROOT | NLM_F_MATCH), for RTM_GET*
NLM_F_EXCL = 0x200  # on RTM_NEW*: fail with EEXIST rather than change an existing object
NLM_F_CREATE = 0x400  # on RTM_NEW*: create the object
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request was not copied back, only its header
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: attributes follow (the kernel's reason, in words)

# --- socket options (linux/netlink.h) --------------------------------------------------------
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors do not echo our whole request back, just its header
NETLINK_EXT_ACK = 11  # errors carry the kernel's reason as text ("Unknown device type")

# --- attributes ------------------------------------------------------------------------------
NLA_F_NESTED = 0x8000  # this attribute's value is more attributes
NLA_TYPE_MASK = 0x3FFF  # the type without the NESTED and NET_BYTEORDER bits
NLMSGERR_ATTR_MSG = 1  # in an error: the reason text

IFLA_ADDRESS = 1  # a link's MAC address
IFLA_IFNAME = 3  # its name
IFLA_MASTER = 10  # the index of the bridge it is a port of
IFLA_LINKINFO = 18  # nested: what kind of device (bridge, veth...) and its settings
IFLA_NET_NS_FD = 28  # put the link in the namespace this fd (of the sender) names
IFLA_INFO_KIND = 1  # in IFLA_LINKINFO: "bridge", "veth"
IFLA_INFO_DATA = 2  # in IFLA_LINKINFO: the kind's own attributes
VETH_INFO_PEER = 1  # in a veth's IFLA_INFO_DATA: an ifinfomsg and attributes for the peer

IFA_ADDRESS = 1  # the address (the far end on a point-to-point link, else = IFA_LOCAL)
IFA_LOCAL = 2  # this host's address on the interface
IFA_BROADCAST = 4

RTA_DST = 1
RTA_GATEWAY = 5
RTA_TABLE = 15  # the table number, for tables past 255 that do not fit rtmsg's byte

# --- values ----------------------------------------------------------------------------------
IFF_UP = 0x1  # ifinfomsg flag: administratively up ("ip link set X up")
RT_TABLE_MAIN = 254  # the table "ip route" shows; "local" (255) holds the kernel's own
RTPROT_STATIC = 4  # who added a route: an administrator ("proto static" in ip route)
RT_SCOPE_UNIVERSE = 0  # a route or address valid beyond this host ("scope global")
RTN_UNICAST = 1  # a plain route to a gateway or a link
IFNAMSIZ = 16  # an interface name is at most 15 bytes and a NUL

# --- the fixed structs -----------------------------------------------------------------------
# "=" : native byte order, no alignment padding (the kernel's structs have none here).
NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), device type, index, flags, change mask
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=8BI")  # family, dst_len, src_len, tos, table, protocol, scope, type; flags
RTATTR = struct.Struct("=HH")  # length (header included, padding not), type
NLMSGERR = struct.Struct("=i")  # 0 or minus an errno, then the request's header

# Big enough for any single read: the kernel fills a dump's reads up to about 32 KiB.
RECV_BUFFER = 65536


class NetlinkError(OSError):
    """The kernel refused a request: an errno, the request's type and, when it gave one, its
    own explanation (the extended ack: "Attribute failed policy validation")."""

    def __init__(self, err: int, request: str, reason: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.request = request
        self.reason = reason

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.request}: {self.strerror} [{name}]{reason}"


# --- attributes ------------------------------------------------------------------------------
def _align(length: int) -> int:
    """Netlink pads every attribute and message to a multiple of 4 bytes."""
    return (length + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    """One attribute: a 4-byte header (length, type), the value, zeros up to 4 bytes."""
    length = RTATTR.size + len(value)
    return RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def attr_str(kind: int, text: str) -> bytes:
    """A string attribute, NUL-terminated as the kernel's C strings are."""
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def attr_ipv4(kind: int, address: str | ipaddress.IPv4Address) -> bytes:
    """An IPv4 address attribute: its 4 bytes in network order."""
    return attr(kind, ipaddress.IPv4Address(address).packed)


def nested(kind: int, *attrs: bytes) -> bytes:
    """An attribute whose value is other attributes (IFLA_LINKINFO holds the kind...)."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes in ``data`` from ``offset``, by type (the first of a repeated one)."""
    out: dict[int, bytes] = {}
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:  # malformed: stop rather than loop forever
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[offset + RTATTR.size : offset + length])
        offset += _align(length)
    return out


def _str(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode()


def _u32(value: bytes) -> int:
    return struct.unpack("=I", value[:4])[0]


# --- the fixed part of each object -----------------------------------------------------------
def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """A link: its index (0 when named by IFLA_IFNAME or being created), and the flag bits
    in ``change`` set to their value in ``flags`` (the rest left alone)."""
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(index: int = 0, prefixlen: int = 0) -> bytes:
    """An IPv4 address on link ``index``, with the prefix length of its subnet."""
    return IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)


def rtmsg(dst_len: int = 0, table: int = RT_TABLE_MAIN) -> bytes:
    """An IPv4 unicast route to a ``dst_len``-bit prefix (0: the default route)."""
    return RTMSG.pack(
        socket.AF_INET, dst_len, 0, 0, table, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    )


# --- messages and the socket -----------------------------------------------------------------
# Plain named tuples (collections.namedtuple, not typing.NamedTuple: typing alone costs 2 ms
# to import, on every container start).
class Message(namedtuple("Message", "type flags seq body")):
    """One netlink message as read back: its header fields and what follows the header.

    type: RTM_NEWLINK, NLMSG_ERROR, NLMSG_DONE...; flags: NLM_F_MULTI, NLM_F_DUMP_INTR...;
    seq: the sequence number of the request it answers; body: the fixed struct, then
    attributes.
    """

    __slots__ = ()


def parse_messages(data: bytes) -> Iterator[Message]:
    """Split one read from the socket into messages (a dump packs many into one read)."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _port = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        yield Message(kind, flags, seq, data[offset + NLMSGHDR.size : offset + length])
        offset += _align(length)


def _open_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in this thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_socket_in(netns_fd: int, path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket in the namespace ``netns_fd`` names.

    setns(2) moves only the calling thread, so a multi-threaded program (a Jupyter kernel)
    is safe: this thread enters, creates the socket (which stays bound to that namespace
    for its whole life) and at once goes back where it was, whatever happens.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(netns_fd, syscalls.CLONE_NEWNET, path, quiet=True)
        try:
            return _open_socket()
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET, "/proc/thread-self/ns/net", quiet=True)
    finally:
        os.close(own)


class Netlink:
    """A conversation with the kernel's rtnetlink, on the host or inside a namespace.

    ``netns`` is None (this thread's namespace), a path (``/proc/PID/ns/net``,
    ``/run/netns/NAME``) or an open file descriptor of one. Use it in a ``with`` block.
    """

    def __init__(self, netns: str | int | None = None) -> None:
        if netns is None:
            self.sock = _open_socket()
        elif isinstance(netns, int):
            self.sock = _open_socket_in(netns, None)
        else:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.sock = _open_socket_in(fd, netns)
            finally:
                os.close(fd)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        """Write one message; the sequence number lets us tell its answers apart."""
        self.seq += 1
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self.seq, 0)
        self.sock.send(header + body)
        return self.seq

    def _answers(self, seq: int, request: str) -> list[Message]:
        """Read the answers to request ``seq`` up to the kernel's last word on it: the ack,
        an error (raised as :class:`NetlinkError`) or the end of a dump."""
        out: list[Message] = []
        while True:
            for msg in parse_messages(self.sock.recv(RECV_BUFFER)):
                if msg.seq != seq:
                    continue  # not ours (an answer to a request given up on)
                if msg.type == NLMSG_ERROR:
                    (err,) = NLMSGERR.unpack_from(msg.body)
                    if err:
                        raise NetlinkError(-err, request, _ack_reason(msg))
                    return out  # error 0: the ack
                if msg.type == NLMSG_DONE:
                    # A dump that failed half-way says so here, as minus an errno.
                    (err,) = NLMSGERR.unpack_from(msg.body) if msg.body else (0,)
                    if err < 0:
                        raise NetlinkError(-err, request)
                    out.append(msg)  # kept for its NLM_F_DUMP_INTR flag
                    return out
                out.append(msg)

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[Message]:
        """Ask for one change (or one object) and wait for the ack; returns any answer."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)
        return self._answers(seq, _NAMES.get(kind, str(kind)))

    def dump(self, kind: int, body: bytes) -> list[Message]:
        """Ask for every object of a kind (``ip link show``); the answers, in order.

        If the objects changed while the kernel was listing them, it flags the answer as
        possibly inconsistent; the dump is then asked again (a few times at most).
        """
        for _ in range(5):
            seq = self._send(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
            answers = self._answers(seq, _NAMES.get(kind, str(kind)))
            if not any(m.flags & NLM_F_DUMP_INTR for m in answers):
                break
        return [m for m in answers if m.type != NLMSG_DONE]


def _ack_reason(msg: Message) -> str:
    """The extended ack's text, if the kernel gave one: it follows our request's header
    (or the whole request, when the kernel copied it back uncapped)."""
    if not msg.flags & NLM_F_ACK_TLVS:
        return ""
    offset = NLMSGERR.size + NLMSGHDR.size
    if not msg.flags & NLM_F_CAPPED:
        offset = NLMSGERR.size + _align(NLMSGHDR.unpack_from(msg.body, NLMSGERR.size)[0])
    reason = parse_attrs(msg.body, offset).get(NLMSGERR_ATTR_MSG)
    return _str(reason) if reason else ""


# --- links -----------------------------------------------------------------------------------
class Link(namedtuple("Link", "index name up mac master")):
    """A network interface as the kernel describes it in RTM_NEWLINK.

    index: its ifindex, unique within its namespace; name: IFLA_IFNAME; up: IFF_UP
    (administratively up); mac: IFLA_ADDRESS as "aa:bb:cc:dd:ee:ff", None for links without
    one; master: IFLA_MASTER, the bridge's index for a bridge port, else None.
    """

    __slots__ = ()


def _link(msg: Message) -> Link:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(msg.body)
    attrs = parse_attrs(msg.body, IFINFOMSG.size)
    mac = attrs.get(IFLA_ADDRESS)
    master = attrs.get(IFLA_MASTER)
    return Link(
        index=index,
        name=_str(attrs.get(IFLA_IFNAME, b"")),
        up=bool(flags & IFF_UP),
        mac=":".join(f"{b:02x}" for b in mac) if mac else None,
        master=_u32(master) if master else None,
    )


def get_link(nl: Netlink, name: str) -> Link | None:
    """``ip link show NAME``: RTM_GETLINK naming the link; None if there is no such link."""
    if len(name.encode()) >= IFNAMSIZ:
        return None  # no link can have that name (the kernel would answer EINVAL)
    try:
        answers = nl.request(RTM_GETLINK, ifinfomsg() + attr_str(IFLA_IFNAME, name))
    except NetlinkError as e:
        if e.errno == errno.ENODEV:
            return None
        raise
    return _link(answers[0])


def list_links(nl: Netlink) -> list[Link]:
    """``ip link show``: a dump of every link in the namespace."""
    return [_link(m) for m in nl.dump(RTM_GETLINK, ifinfomsg()) if m.type == RTM_NEWLINK]


def add_bridge(nl: Netlink, name: str) -> None:
    """``ip link add NAME type bridge``: RTM_NEWLINK with the kind "bridge"."""
    nl.request(
        RTM_NEWLINK,
        ifinfomsg()
        + attr_str(IFLA_IFNAME, name)
        + nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge")),
        NLM_F_CREATE | NLM_F_EXCL,
    )


def add_veth(
    nl: Netlink,
    name: str,
    peer: str,
    peer_netns_fd: int | None = None,
    peer_mac: str | None = None,
) -> None:
    """``ip link add NAME type veth peer name PEER netns NS [address MAC]``: both ends in one
    request.

    The peer's description sits inside the veth's own settings (VETH_INFO_PEER): an
    ifinfomsg and attributes, as for a link of its own. With IFLA_NET_NS_FD the kernel
    creates the peer directly in that namespace, so it never exists here under its name.
    Without ``peer_mac`` (IFLA_ADDRESS) the kernel makes up a random one.
    """
    peer_attrs = attr_str(IFLA_IFNAME, peer)
    if peer_mac is not None:
        peer_attrs += attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
    if peer_netns_fd is not None:
        peer_attrs += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
    nl.request(
        RTM_NEWLINK,
        ifinfomsg()
        + attr_str(IFLA_IFNAME, name)
        + nested(
            IFLA_LINKINFO,
            attr_str(IFLA_INFO_KIND, "veth"),
            nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, ifinfomsg() + peer_attrs)),
        ),
        NLM_F_CREATE | NLM_F_EXCL,
    )


def set_link(nl: Netlink, index: int, *, up: bool | None = None, master: int | None = None) -> None:
    """``ip link set DEV [master BRIDGE] [up|down]``: RTM_SETLINK on link ``index``.

    Only the IFF_UP bit is named in the change mask, so the link's other flags stay.
    """
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    body = ifinfomsg(index, flags, change)
    if master is not None:
        body += attr_u32(IFLA_MASTER, master)
    nl.request(RTM_SETLINK, body)


def delete_link(nl: Netlink, name: str) -> None:
    """``ip link del NAME``: RTM_DELLINK naming the link (ENODEV if there is none).

    Deleting either end of a veth pair deletes both.
    """
    nl.request(RTM_DELLINK, ifinfomsg() + attr_str(IFLA_IFNAME, name))


# --- addresses -------------------------------------------------------------------------------
class Address(namedtuple("Address", "index address prefixlen")):
    """An IPv4 address on a link, as RTM_NEWADDR describes it.

    index: the link's index; address: IFA_ADDRESS (on a point-to-point link, the far end's
    address); prefixlen: the subnet's prefix length.
    """

    __slots__ = ()


def add_address(nl: Netlink, index: int, interface: ipaddress.IPv4Interface) -> None:
    """``ip addr add 172.30.0.2/16 brd + dev DEV``: RTM_NEWADDR.

    As ``ip`` does, the address goes as both IFA_LOCAL (ours) and IFA_ADDRESS (the same, on
    a link that is not point-to-point), with the subnet's broadcast address. The kernel adds
    the route to the subnet by itself ("proto kernel scope link").
    """
    nl.request(
        RTM_NEWADDR,
        ifaddrmsg(index, interface.network.prefixlen)
        + attr_ipv4(IFA_LOCAL, interface.ip)
        + attr_ipv4(IFA_ADDRESS, interface.ip)
        + attr_ipv4(IFA_BROADCAST, interface.network.broadcast_address),
        NLM_F_CREATE | NLM_F_EXCL,
    )


def list_addresses(nl: Netlink) -> list[Address]:
    """``ip -4 addr show``: a dump of the IPv4 addresses of every link."""
    out = []
    for msg in nl.dump(RTM_GETADDR, ifaddrmsg()):
        _family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(msg.body)
        attrs = parse_attrs(msg.body, IFADDRMSG.size)
        raw = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL)
        if msg.type == RTM_NEWADDR and raw:
            out.append(Address(index, str(ipaddress.IPv4Address(raw)), prefixlen))
    return out


# --- routes ----------------------------------------------------------------------------------
class Route(namedtuple("Route", "dst prefixlen gateway table")):
    """An IPv4 route, as RTM_NEWROUTE describes it.

    dst: RTA_DST, None for the default route; prefixlen: the destination's prefix length
    (0: default); gateway: RTA_GATEWAY, the next hop, None for a directly connected subnet;
    table: RT_TABLE_MAIN (254), local (255)...
    """

    __slots__ = ()


def add_default_route(nl: Netlink, gateway: str) -> None:
    """``ip route add default via GATEWAY``: RTM_NEWROUTE for 0.0.0.0/0 with a next hop.

    No device is named: the kernel finds the link whose subnet holds the gateway, so the
    address must be added first.
    """
    nl.request(
        RTM_NEWROUTE, rtmsg(dst_len=0) + attr_ipv4(RTA_GATEWAY, gateway), NLM_F_CREATE | NLM_F_EXCL
    )


def list_routes(nl: Netlink, table: int = RT_TABLE_MAIN) -> list[Route]:
    """``ip -4 route show table TABLE``: the kernel dumps every table, this keeps one."""
    out = []
    # Only the family counts in a dump request: the kernel ignores the rest of the rtmsg.
    for msg in nl.dump(RTM_GETROUTE, RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
        if msg.type != RTM_NEWROUTE:
            continue
        fields = RTMSG.unpack_from(msg.body)
        dst_len, msg_table = fields[1], fields[4]
        attrs = parse_attrs(msg.body, RTMSG.size)
        if RTA_TABLE in attrs:  # the full number, when the byte in rtmsg cannot hold it
            msg_table = _u32(attrs[RTA_TABLE])
        if msg_table != table:
            continue
        dst, gateway = attrs.get(RTA_DST), attrs.get(RTA_GATEWAY)
        out.append(
            Route(
                dst=str(ipaddress.IPv4Address(dst)) if dst else None,
                prefixlen=dst_len,
                gateway=str(ipaddress.IPv4Address(gateway)) if gateway else None,
                table=msg_table,
            )
        )
    return out

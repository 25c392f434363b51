"""containerlab.network.netlink on the real kernel, cross-checked with independent readers.

Every link is made inside a throwaway network namespace (``clab-t-XXXXXX``) unless the test
is about the host path of ``links``; what the hand-written client did is then read back
with iproute2's ``ip -j`` and with pyroute2, which share no code with it. No packet leaves
the machine: nothing here sends traffic at all.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from containerlab import syscalls
from containerlab.errors import NetworkError
from containerlab.network import links
from containerlab.network import netlink as nl

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="netlink changes need root")


def ip_json(ns: str | None, *args: str) -> list[dict]:
    """``ip -j ARGS`` (in namespace ``ns``), parsed."""
    argv = ["ip", *(["-n", ns] if ns else []), "-j", *args]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def pyroute2_link(ns: str, name: str):
    """The link as pyroute2 (an independent netlink implementation) reads it."""
    from pyroute2 import IPRoute

    with IPRoute(netns=ns, flags=0) as ipr:  # flags=0: never create the namespace
        return ipr.link("get", ifname=name)[0]


def _thread_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# --- the wire format (no kernel needed) ------------------------------------------------------
def test_attributes_are_padded_to_four_bytes_and_parse_back():
    # "eth0" and its NUL are 5 bytes: with the 4-byte header, 9; padded to 12.
    assert nl.attr_str(nl.IFLA_IFNAME, "eth0") == b"\x09\x00\x03\x00eth0\x00\x00\x00\x00"
    assert nl.attr_u32(nl.IFLA_MASTER, 7) == b"\x08\x00\x0a\x00\x07\x00\x00\x00"
    # Nesting: the outer attribute's value is the inner ones, and its type has the flag.
    linkinfo = nl.nested(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, "veth"))
    outer = nl.parse_attrs(linkinfo)
    assert list(outer) == [nl.IFLA_LINKINFO]
    assert nl.parse_attrs(outer[nl.IFLA_LINKINFO]) == {nl.IFLA_INFO_KIND: b"veth\0"}
    assert nl.attr_ipv4(nl.RTA_GATEWAY, "10.0.0.1")[4:] == bytes([10, 0, 0, 1])
    assert len(nl.ifinfomsg()) == 16 and len(nl.ifaddrmsg()) == 8 and len(nl.rtmsg()) == 12


def test_links_imports_neither_pyroute2_nor_asyncio():
    code = (
        "import sys, containerlab.network.links;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyroute2', 'asyncio'}))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


# --- links -----------------------------------------------------------------------------------
@needs_root
def test_bridge_created_seen_by_ip_and_pyroute2_then_deleted(netns):
    ns = netns()
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        nl.add_bridge(sock, "clab-t-br")
        made = nl.get_link(sock, "clab-t-br")
        assert made is not None and not made.up
        (shown,) = ip_json(ns, "-d", "link", "show", "clab-t-br")
        assert shown["linkinfo"]["info_kind"] == "bridge"
        assert (shown["ifindex"], shown["address"]) == (made.index, made.mac)
        assert pyroute2_link(ns, "clab-t-br")["index"] == made.index
        # It was made in the namespace, not on the host.
        with nl.Netlink() as on_host:
            assert nl.get_link(on_host, "clab-t-br") is None

        nl.set_link(sock, made.index, up=True)
        assert nl.get_link(sock, "clab-t-br").up
        assert "UP" in ip_json(ns, "link", "show", "clab-t-br")[0]["flags"]

        nl.delete_link(sock, "clab-t-br")
        assert nl.get_link(sock, "clab-t-br") is None
        assert ip_json(ns, "link", "show") and "clab-t-br" not in [
            link["ifname"] for link in ip_json(ns, "link", "show")
        ]


@needs_root
def test_veth_peer_is_born_in_the_other_namespace_and_plugged_into_a_bridge(netns):
    host, container = netns(), netns()
    fd = os.open(f"/run/netns/{container}", os.O_RDONLY)
    try:
        with nl.Netlink(f"/run/netns/{host}") as sock:
            nl.add_bridge(sock, "clab-t-br")
            br = nl.get_link(sock, "clab-t-br")
            nl.add_veth(sock, "clab-t-v0", "eth0", fd)
            veth = nl.get_link(sock, "clab-t-v0")
            nl.set_link(sock, veth.index, master=br.index, up=True)
            # The peer never existed on this side under its name.
            assert nl.get_link(sock, "eth0") is None
            assert nl.get_link(sock, "clab-t-v0").master == br.index
    finally:
        os.close(fd)

    (shown,) = ip_json(host, "-d", "link", "show", "clab-t-v0")
    assert shown["linkinfo"]["info_kind"] == "veth"
    assert shown["master"] == "clab-t-br" and "UP" in shown["flags"]
    assert pyroute2_link(host, "clab-t-v0").get("IFLA_MASTER") == br.index

    (peer,) = ip_json(container, "-d", "link", "show", "eth0")
    assert peer["linkinfo"]["info_kind"] == "veth"
    assert peer["link_index"] == veth.index  # eth0@ifN: its other end is our veth
    with nl.Netlink(f"/run/netns/{container}") as inside:
        eth0 = nl.get_link(inside, "eth0")
        assert (eth0.index, eth0.mac) == (peer["ifindex"], peer["address"])
        assert pyroute2_link(container, "eth0").get("IFLA_ADDRESS") == eth0.mac

    # Deleting one end deletes both.
    with nl.Netlink(f"/run/netns/{host}") as sock:
        nl.delete_link(sock, "clab-t-v0")
    assert "eth0" not in [link["ifname"] for link in ip_json(container, "link", "show")]


@needs_root
def test_address_and_default_route_as_ip_and_pyroute2_see_them(netns):
    from pyroute2 import IPRoute

    ns = netns()
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        nl.add_bridge(sock, "clab-t-br")
        idx = nl.get_link(sock, "clab-t-br").index
        nl.add_address(sock, idx, ipaddress.IPv4Interface("10.231.50.2/24"))
        nl.set_link(sock, idx, up=True)
        nl.add_default_route(sock, "10.231.50.1")
        addresses = nl.list_addresses(sock)
        routes = nl.list_routes(sock)

    assert nl.Address(idx, "10.231.50.2", 24) in addresses
    (info,) = [
        a for a in ip_json(ns, "addr", "show", "clab-t-br")[0]["addr_info"] if a["family"] == "inet"
    ]
    assert (info["local"], info["prefixlen"], info["broadcast"]) == (
        "10.231.50.2",
        24,
        "10.231.50.255",
    )
    assert info["scope"] == "global"

    # The main table: the default route we added, the subnet route the kernel added.
    assert set(routes) == {
        nl.Route(None, 0, "10.231.50.1", nl.RT_TABLE_MAIN),
        nl.Route("10.231.50.0", 24, None, nl.RT_TABLE_MAIN),
    }
    shown = {r["dst"]: r for r in ip_json(ns, "-4", "route", "show", "table", "main")}
    assert shown["default"]["gateway"] == "10.231.50.1"
    assert shown["default"]["protocol"] == "static" and shown["default"]["dev"] == "clab-t-br"
    assert shown["10.231.50.0/24"]["protocol"] == "kernel"
    # The local table holds the kernel's own routes; list_routes can read it too.
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        local = nl.list_routes(sock, table=255)
    assert nl.Route("10.231.50.2", 32, None, 255) in local

    with IPRoute(netns=ns, flags=0) as ipr:
        theirs = {(a.get("address"), a["prefixlen"], a["index"]) for a in ipr.get_addr(family=2)}
        default = [r for r in ipr.get_routes(family=2, table=254) if r["dst_len"] == 0]
    assert theirs == {(a.address, a.prefixlen, a.index) for a in addresses}
    assert [r.get("gateway") for r in default] == ["10.231.50.1"]


@needs_root
def test_dumps_agree_with_ip_on_the_host():
    # Other tests may add or remove clab links meanwhile: compare everything else.
    with nl.Netlink() as sock:
        ours = {link.index: link.name for link in nl.list_links(sock)}
        addresses = nl.list_addresses(sock)
    ours = {i: n for i, n in ours.items() if not n.startswith("clab")}
    shown = ip_json(None, "-4", "addr", "show")
    theirs = {link["ifindex"]: link["ifname"] for link in ip_json(None, "link", "show")}
    assert ours == {i: n for i, n in theirs.items() if not n.startswith("clab")}
    assert {(a.index, a.address, a.prefixlen) for a in addresses if a.index in ours} == {
        (link["ifindex"], a["local"], a["prefixlen"])
        for link in shown
        if link["ifindex"] in ours
        for a in link["addr_info"]
    }


@needs_root
def test_host_networks_as_pyroute2_computes_them():
    """The same answer as before the rewrite: pyroute2's dumps, main table only."""
    from pyroute2 import IPRoute

    def by_pyroute2() -> list[ipaddress.IPv4Network]:
        out = set()
        with IPRoute() as ipr:
            for addr in ipr.get_addr(family=2):
                ip = addr.get("IFA_ADDRESS")
                if ip and not ip.startswith("127."):
                    out.add(ipaddress.IPv4Network(f"{ip}/{addr['prefixlen']}", strict=False))
            for route in ipr.get_routes(family=2, table=254):
                dst = route.get("RTA_DST")
                if dst and route["dst_len"] > 0:
                    out.add(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        return sorted(out)

    # Other engineers' tests may add a network between the two reads: retry once.
    for _ in range(3):
        if links.host_networks() == by_pyroute2():
            break
    assert links.host_networks() == by_pyroute2()


# --- errors ----------------------------------------------------------------------------------
@needs_root
def test_kernel_refusals_are_oserrors_with_the_request_and_reason(netns):
    ns = netns()
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        nl.add_bridge(sock, "clab-t-br")
        with pytest.raises(nl.NetlinkError) as exists:
            nl.add_bridge(sock, "clab-t-br")
        assert exists.value.errno == errno.EEXIST and isinstance(exists.value, OSError)
        assert str(exists.value) == "RTM_NEWLINK: File exists [EEXIST]"

        with pytest.raises(nl.NetlinkError) as gone:
            nl.delete_link(sock, "clab-t-nope")
        assert gone.value.errno == errno.ENODEV and gone.value.request == "RTM_DELLINK"
        with pytest.raises(nl.NetlinkError) as no_index:
            nl.set_link(sock, 99999, up=True)
        assert no_index.value.errno == errno.ENODEV

        # 16 bytes: one too many. The kernel's policy check refuses it and says why.
        with pytest.raises(nl.NetlinkError) as long_name:
            nl.add_bridge(sock, "clab-t-toolong16")
        assert long_name.value.errno in (errno.ERANGE, errno.EINVAL)
        assert long_name.value.reason  # "Attribute failed policy validation"
        assert nl.get_link(sock, "clab-t-toolong16") is None  # no link can have that name

        with pytest.raises(nl.NetlinkError) as unreachable:
            nl.add_default_route(sock, "10.231.51.1")  # no address makes it reachable
        assert unreachable.value.errno == errno.ENETUNREACH
    assert [link["ifname"] for link in ip_json(ns, "link", "show")] == ["lo", "clab-t-br"]


@needs_root
def test_entering_a_namespace_always_comes_back(netns):
    ns, before = netns(), _thread_netns()
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        assert _thread_netns() == before  # only the socket lives there
        assert [link.name for link in nl.list_links(sock)] == ["lo"]
    # Not a network namespace: setns refuses, and the thread stays where it was.
    with pytest.raises(syscalls.SyscallError) as refused:
        nl.Netlink("/proc/self/ns/uts")
    assert refused.value.errno == errno.EINVAL and _thread_netns() == before


@needs_root
def test_another_thread_entering_does_not_move_this_one(netns):
    ns, seen, before = netns(), [], _thread_netns()
    with nl.Netlink(f"/run/netns/{ns}") as sock:
        nl.add_bridge(sock, "clab-t-br")

    def worker() -> None:
        with nl.Netlink(f"/run/netns/{ns}") as sock:
            seen.append(sorted(link.name for link in nl.list_links(sock)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [["clab-t-br", "lo"]] * 4
    assert _thread_netns() == before
    with nl.Netlink() as sock:  # this thread's socket is still where it was
        assert nl.get_link(sock, "clab-t-br") is None


# --- links.py on top of it: its errors name the errno and leave nothing behind ---------------
@needs_root
def test_attach_failures_are_network_errors_and_leave_no_veth(netns):
    ns = netns()
    name = f"clab-t-{uuid.uuid4().hex[:6]}"
    veth = f"clabt{uuid.uuid4().hex[:6]}"
    with pytest.raises(NetworkError, match=f"bridge {name} does not exist; create its network"):
        links.attach(name, ns, "10.231.52.2/24", "10.231.52.1", veth)
    with links.bridge(name, "10.231.52.1/24"):
        # The container end's name is too long: the kernel refuses the veth.
        with pytest.raises(
            NetworkError,
            match=rf"cannot create veth {veth}: .* \(netlink error (34|22)\)",
        ):
            links.attach(name, ns, "10.231.52.2/24", "10.231.52.1", veth, "eth0-much-too-long")
        # A gateway outside the subnet: the route fails inside, the pair is deleted again.
        with pytest.raises(
            NetworkError,
            match=rf"cannot configure eth0 in /run/netns/{ns}: "
            r"Network is unreachable \(netlink error 101\)",
        ):
            links.attach(name, ns, "10.231.52.2/24", "10.231.99.1", veth)
        assert not links.link_exists(veth)
        assert not links.link_exists("eth0", ns)
        with links.veth_pair(name, ns, "10.231.52.2/24", "10.231.52.1", veth) as ep:
            assert links.link_exists(veth) and links.link_exists("eth0", ns)
            (peer,) = ip_json(ns, "link", "show", "eth0")
            assert ep.mac == peer["address"]
            with pytest.raises(NetworkError, match=f"link {veth} already exists"):
                links.attach(name, ns, "10.231.52.3/24", "10.231.52.1", veth)
        assert not links.link_exists(veth)
    assert links.delete_link(name) is False
    assert links.delete_link("clab-t-much-too-long") is False

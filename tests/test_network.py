"""containerlab.network on the real kernel: bridges, veths, IPAM, NAT and published ports.

Every packet stays on this machine: between the test's own network namespaces, their
bridges and the host's loopback. Each test checks that it left no clab link, netns, nft
table or iptables chain behind, and that ip_forward is as it found it.
"""

from __future__ import annotations

import http.client
import ipaddress
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest

from containerlab import paths
from containerlab.errors import NetworkError
from containerlab.network import ipam, links, nat, networks

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")

BUSYBOX = "/usr/bin/busybox"


def _ip_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def _firewall_leftovers() -> list[str]:
    out = []
    res = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    out += [f"nft: {line.strip()}" for line in res.stdout.splitlines() if "clab" in line.lower()]
    for table in ("nat", "filter"):
        res = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        out += [f"iptables: {line}" for line in res.stdout.splitlines() if "CLAB" in line]
    return out


@pytest.fixture(autouse=True)
def nothing_left():
    """Besides the root conftest's link/netns/process check: firewall and ip_forward."""
    forward = _ip_forward()
    yield
    assert _firewall_leftovers() == []
    assert links.clab_links() == []
    assert _ip_forward() == forward


def _ping(ns: str, address: str) -> bool:
    argv = ["ip", "netns", "exec", ns, BUSYBOX, "ping", "-c1", "-W1", address.split("/")[0]]
    return subprocess.run(argv, capture_output=True).returncode == 0


def _ip(endpoint: links.Endpoint) -> str:
    return endpoint.address.split("/")[0]


def _serve(ns: str, code: str) -> subprocess.Popen:
    """Run a Python server inside ``ns``; returns once it printed that it listens."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


HTTP_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the container"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("0.0.0.0", 80), H)
print("ready", flush=True)
s.serve_forever()
"""

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048); s.sendto(b"echo:" + data, peer)
"""


def _get(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# --- links and networks ----------------------------------------------------------------------
def test_same_network_pings_other_network_cannot(netns):
    a, b, c = netns(), netns(), netns()
    with networks.network("t-one") as one, networks.network("t-two"):
        assert one.bridge == "clab-t-one" and one.gateway.endswith(".1")
        with (
            networks.endpoint("t-one", "ca", a) as ea,
            networks.endpoint("t-one", "cb", b) as eb,
            networks.endpoint("t-two", "cc", c) as ec,
        ):
            assert ea.ifname == "eth0" and links.link_exists("eth0", a)
            assert _ping(a, _ip(eb)) and _ping(b, _ip(ea))
            assert _ping(a, one.gateway)  # the default route's next hop answers
            # Routed via the host, the isolation rule drops bridge-to-bridge traffic.
            assert not _ping(a, _ip(ec))
            assert not _ping(c, _ip(ea))
            assert networks.inspect("t-one")["endpoints"] == {"ca": _ip(ea), "cb": _ip(eb)}
            with pytest.raises(NetworkError, match="attached endpoint"):
                networks.remove("t-one")
        assert ipam.allocations("t-one") == {}
    assert networks.ls() == []


def test_veth_into_a_process_namespace_by_pid():
    from containerlab import namespaces

    with (
        links.bridge("clab-t-br", "10.231.7.1/24"),
        namespaces.spawn(["sleep", "30"], new={"net"}) as proc,
        links.veth_pair(
            "clab-t-br", proc.child_pid, "10.231.7.2/24", "10.231.7.1", "clabt-pid"
        ) as ep,
    ):
        out = namespaces.enter(proc.child_pid, ["ip", "-o", "-4", "addr"], kinds=["net"]).stdout
        assert "eth0" in out and "10.231.7.2/24" in out
        route = namespaces.enter(proc.child_pid, ["ip", "route"], kinds=["net"]).stdout
        assert "default via 10.231.7.1 dev eth0" in route
        assert ep.netns == f"/proc/{proc.child_pid}/ns/net"


def test_an_exited_endpoints_veth_goes_with_its_namespace_and_a_restart_waits_for_it():
    from containerlab import namespaces

    veth = links.veth_name("c1", "t-again")
    with networks.network("t-again"):
        with namespaces.spawn(["sleep", "30"], new={"net"}) as proc:
            networks.connect("t-again", "c1", proc.child_pid)
            proc.kill()
            proc.wait()
        # The namespace has no process left: the kernel deletes the veth, not disconnect.
        networks.disconnect("t-again", "c1", exited=True)
        assert ipam.allocations("t-again") == {}
        # Plugged again at once, as a restart is: the old veth, if not gone yet, is waited for.
        with namespaces.spawn(["sleep", "30"], new={"net"}) as proc:
            ep = networks.connect("t-again", "c1", proc.child_pid)
            assert ep.host_ifname == veth and links.link_exists(veth)
            networks.disconnect("t-again", "c1", exited=True, shared=True)  # held: deleted
            assert not links.link_exists(veth)
        with namespaces.spawn(["sleep", "30"], new={"net"}) as proc:
            networks.connect("t-again", "c1", proc.child_pid)
            proc.kill()
            proc.wait()
        networks.disconnect("t-again", "c1", exited=True)
        assert links.wait_gone(veth, timeout=2), "the kernel took the veth with the namespace"
        # A veth whose namespace lives on, with no address on record (a crash's leftover): a
        # new plug deletes it first.
        with (
            namespaces.spawn(["sleep", "30"], new={"net"}) as a,
            namespaces.spawn(["sleep", "30"], new={"net"}) as b,
        ):
            networks.connect("t-again", "c2", a.child_pid)
            ipam.release("t-again", "c2")
            ep = networks.connect("t-again", "c2", b.child_pid)
            assert ep.netns == f"/proc/{b.child_pid}/ns/net"
            out = namespaces.enter(a.child_pid, ["ip", "-o", "link"], kinds=["net"]).stdout
            assert "eth0" not in out
            networks.disconnect("t-again", "c2")


def test_default_network_and_picked_subnets_do_not_overlap():
    default = networks.ensure_default()
    try:
        # A state root of its own (each test's): a bridge and a /24 of its own, never clab0.
        assert default.name == "bridge" and default.bridge.startswith("clab0-")
        assert ipaddress.IPv4Network(default.subnet).subnet_of(ipaddress.IPv4Network(networks.POOL))
        assert networks.ensure_default() == default  # second call: same network, nothing new
        with networks.network("t-a") as a, networks.network("t-b") as b:
            assert a.subnet != b.subnet
            nets = [ipaddress.IPv4Network(n.subnet) for n in (default, a, b)]
            assert not any(x.overlaps(y) for x in nets for y in nets if x is not y)
    finally:
        networks.remove("bridge")


def test_the_labs_default_network_is_clab0_on_172_30(monkeypatch):
    monkeypatch.setenv("CONTAINERLAB_ROOT", paths.DEFAULT_ROOT)
    assert networks.default_shape() == ("clab0", "172.30.0.0/16")


def test_overlapping_subnet_refused_and_nothing_changed():
    with networks.network("t-a", "10.231.0.0/24"):
        before = (networks.ls(), links.clab_links(), nat.rules())
        with pytest.raises(NetworkError, match=r"subnet 10.231.0.128/25 overlaps network 't-a'"):
            networks.create("t-b", "10.231.0.128/25")
        host = [h for h in links.host_networks() if not str(h).startswith("10.231.")]
        if host:  # the host's own LAN (eth0's subnet) is refused as well
            with pytest.raises(NetworkError, match="overlaps the host's route or address"):
                networks.create("t-c", str(host[0]))
        with pytest.raises(NetworkError, match="already exists"):
            networks.create("t-a")
        with pytest.raises(NetworkError, match="reserved"):
            networks.create("host")
        with pytest.raises(NetworkError, match="reserved"):  # the default network's name
            networks.create("bridge")
        assert (networks.ls(), links.clab_links(), nat.rules()) == before


# --- IPAM ------------------------------------------------------------------------------------
def _allocate_one(root: str, owner: str, queue) -> None:
    os.environ["CONTAINERLAB_ROOT"] = root
    queue.put(str(ipam.allocate("t-pool", owner)))


def test_ipam_twenty_concurrent_allocators_get_distinct_addresses(clab_root):
    ipam.create_pool("t-pool", "10.231.1.0/24", "10.231.1.1")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_allocate_one, args=(str(clab_root), f"c{i}", queue)) for i in range(20)
    ]
    for p in procs:
        p.start()
    got = [queue.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    addresses = {g.split("/")[0] for g in got}
    assert len(addresses) == 20
    assert "10.231.1.1" not in addresses and "10.231.1.0" not in addresses
    assert len(ipam.allocations("t-pool")) == 20


def test_ipam_hands_addresses_out_serially_and_wraps_around():
    ipam.create_pool("t-pool", "10.231.3.0/29", "10.231.3.1")  # hosts .1-.6, .1 the gateway
    assert str(ipam.allocate("t-pool", "a")) == "10.231.3.2/29"
    ipam.release("t-pool", "a")
    # Not .2 again at once (a neighbour's ARP cache may still name a's MAC for it).
    assert str(ipam.allocate("t-pool", "b")) == "10.231.3.3/29"
    assert str(ipam.allocate("t-pool", "c", ip="10.231.3.5")) == "10.231.3.5/29"  # --ip
    assert [str(ipam.allocate("t-pool", o)) for o in "de"] == ["10.231.3.4/29", "10.231.3.6/29"]
    assert str(ipam.allocate("t-pool", "f")) == "10.231.3.2/29"  # round: the only one free
    ipam.release("t-pool", "d")
    assert str(ipam.allocate("t-pool", "g")) == "10.231.3.4/29"


def test_ipam_rules():
    ipam.create_pool("t-pool", "10.231.2.0/30", "10.231.2.1")
    # A /30 has two host addresses: .1 is the gateway, so exactly one is left.
    assert str(ipam.allocate("t-pool", "a")) == "10.231.2.2/30"
    assert str(ipam.allocate("t-pool", "a")) == "10.231.2.2/30"  # idempotent retry
    with pytest.raises(NetworkError, match="no free address left"):
        ipam.allocate("t-pool", "b")
    assert ipam.release("t-pool", "a") == "10.231.2.2"
    with pytest.raises(NetworkError, match=r"already taken.*the gateway"):
        ipam.allocate("t-pool", "b", ip="10.231.2.1")
    for bad in ("10.231.2.3", "10.231.2.0", "10.9.9.9"):  # broadcast, network, outside
        with pytest.raises(NetworkError, match="not a usable address"):
            ipam.allocate("t-pool", "b", ip=bad)
    assert str(ipam.allocate("t-pool", "b", ip="10.231.2.2")) == "10.231.2.2/30"
    with pytest.raises(NetworkError, match="already taken"):
        ipam.allocate("t-pool", "c", ip="10.231.2.2")


# --- published ports -------------------------------------------------------------------------
def test_parse_publish():
    assert nat.parse_publish("8080:80/tcp") == nat.PortMapping(None, 8080, 80, "tcp")
    assert nat.parse_publish("127.0.0.1:53:53/udp") == nat.PortMapping("127.0.0.1", 53, 53, "udp")
    assert nat.parse_publish("80") == nat.PortMapping(None, 0, 80, "tcp")
    with pytest.raises(NetworkError, match="invalid port 99999: must be 1-65535"):
        nat.parse_publish("99999:80")
    with pytest.raises(NetworkError, match="invalid port 0: must be 1-65535"):
        nat.parse_publish("8080:0")
    with pytest.raises(NetworkError, match="invalid protocol 'sctp'"):
        nat.parse_publish("80:80/sctp")
    with pytest.raises(NetworkError, match="invalid host address"):
        nat.parse_publish("1.2.3:80:80")


@pytest.mark.parametrize("firewall", ["nftables", "iptables"])
def test_published_tcp_port_answers_on_loopback_and_bridge(netns, monkeypatch, firewall):
    if firewall == "iptables":
        monkeypatch.setenv("CONTAINERLAB_FIREWALL", "iptables")
    ns = netns()
    with networks.network("t-web") as net, networks.endpoint("t-web", "web", ns) as ep:
        server = _serve(ns, HTTP_SERVER)
        try:
            host_port = nat.free_port()
            with nat.published("web", [nat.parse_publish(f"{host_port}:80")], ep.address) as pm:
                assert pm[0].host_port == host_port
                assert _get("127.0.0.1", host_port) == "hello from the container"
                assert _get(net.gateway, host_port) == "hello from the container"
                assert any("web publish" in c for _, c in nat.rules())
                if firewall == "iptables":
                    saved = subprocess.run(["iptables-save"], capture_output=True, text=True)
                    assert "-A CLAB-OUTPUT" in saved.stdout
                else:
                    listed = subprocess.run(["nft", "list", "table", "ip", "clab"], check=True)
                    assert listed.returncode == 0
                # A second owner cannot take the same host port.
                with pytest.raises(NetworkError, match="already published by web"):
                    nat.publish("other", [nat.parse_publish(f"{host_port}:81")], ep.address)
            assert not any(c.startswith("web ") for _, c in nat.rules())
            with pytest.raises(OSError):
                _get("127.0.0.1", host_port)  # gone with its owner: nothing listens there
        finally:
            _stop(server)
    if firewall == "iptables":
        assert (
            "clab"
            not in subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        )


def test_published_udp_port(netns):
    ns = netns()
    with networks.network("t-dns"), networks.endpoint("t-dns", "dns", ns) as ep:
        server = _serve(ns, UDP_ECHO)
        try:
            with nat.published("dns", [nat.parse_publish("53/udp")], ep.address) as pm:
                assert pm[0].host_port > 0  # -p 53/udp: a free host port was picked
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(3)
                    s.sendto(b"ping", ("127.0.0.1", pm[0].host_port))
                    assert s.recvfrom(2048)[0] == b"echo:ping"
        finally:
            _stop(server)


def test_host_port_in_use_refused_and_nothing_changed():
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = nat.rules()
        with pytest.raises(NetworkError, match=f"host port {port}/tcp is already in use"):
            nat.publish("c1", [nat.parse_publish(f"{port}:80")], "10.231.3.2")
        assert nat.rules() == before == []


def test_remove_all_drops_every_rule():
    nat.add_rules(nat.publish_rules("c1", nat.PortMapping(None, 40999, 80), "10.231.4.2"))
    nat.add_rules(nat.network_rules("network:x", "clab-x", "10.231.4.0/24", internal=True))
    assert {c.split()[0] for _, c in nat.rules()} == {"c1", "network:x"}
    assert nat.remove("c1") == 2
    nat.remove_all()
    assert nat.rules() == []


def test_netlink_calls_work_inside_a_running_event_loop():
    """A Jupyter kernel runs an asyncio loop: netlink calls must work inside it (pyroute2's
    sync IPRoute did not; the hand-written client has no loop of its own)."""
    import asyncio

    async def inside() -> bool:
        return links.link_exists("lo")

    assert asyncio.run(inside()) is True


def test_ip_forward_stays_on_while_any_state_root_routes_out(tmp_path, monkeypatch):
    """ip_forward is the host's: one root's last `network rm` must not turn it off under
    another root's network, and the last network of all puts back what was found."""
    found = _ip_forward()
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(tmp_path / "a"))
    networks.create("t-fwd-a")
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(tmp_path / "b"))
    networks.create("t-fwd-b")
    assert _ip_forward() == "1"
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(tmp_path / "a"))
    networks.remove("t-fwd-a")
    assert _ip_forward() == "1", "root b's network still routes out"
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(tmp_path / "b"))
    networks.remove("t-fwd-b")
    assert _ip_forward() == found

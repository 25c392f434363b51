"""Containers on networks, through the real CLI: names, isolation, published ports, IPAM.

Traffic goes only to loopback, to the bridges these tests create and to their containers:
nothing is ever sent to an outside address. After each test no clab link, nft rule or
iptables chain may be left (besides the root conftest's snapshot of mounts, links, cgroups).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from containerlab.network import ipam, links, nat, networks
from containerlab.runtime import state
from tests.conftest import CLI
from tests.test_network_cli import _host_leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")


def clab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    if args[:1] == ("run",):
        # A name missing from /etc/hosts goes to the resolvers in resolv.conf, the host's:
        # outside addresses. The container's own loopback answers "unreachable" at once.
        args = ("run", "--dns", "127.0.0.1", *args[1:])
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def ok(*args: str) -> str:
    res = clab(*args)
    assert res.returncode == 0, f"{args}: rc={res.returncode} {res.stderr}"
    return res.stdout


def inspect(name: str) -> dict:
    return json.loads(ok("inspect", name))[0]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET ``url``, retrying while the server in the container is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(autouse=True)
def nothing_left(clab_root: Path):
    before = set(_host_leftovers())  # another lab's, on a shared machine: not ours to judge
    yield
    try:
        for line in clab("ps", "-aq").stdout.split():
            clab("rm", "-f", line)
        clab("system", "prune", "-f")
        assert set(_host_leftovers()) - before == set()
    finally:
        for net in networks.ls():
            networks.remove(net.name)


def web(name: str, *args: str) -> str:
    """A busybox httpd in the background serving its own /etc (hostname is in there)."""
    return ok(
        "run", "-d", "--name", name, *args, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"
    )


def test_default_bridge_gives_eth0_an_address_a_route_and_the_files():
    out = ok("run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr; ip route; cat /etc/hosts")
    net = networks.get("bridge")
    # This test's own state root: its own default bridge, not the lab's clab0 on 172.30/16.
    assert net.bridge.startswith("clab0-") and links.link_exists(net.bridge)
    assert "eth0" in out and f"inet {net.gateway[:-1]}" in out
    assert f"default via {net.gateway} dev eth0" in out
    assert "localhost" in out
    assert ipam.allocations("bridge") == {}, "the address went back to the pool on exit"


def test_two_containers_reach_each_other_by_name_and_alias_a_third_network_cannot():
    ok("network", "create", "t-front")
    ok("network", "create", "t-back")
    web("t-web", "--network", "t-front", "--network-alias", "www")
    web("t-db", "--network", "t-back")
    hostname = ok("exec", "t-web", "cat", "/etc/hostname").strip()
    probe = "wget -q -O- http://t-web/hostname && wget -q -O- http://www/hostname"
    out = ok("run", "--rm", "--network", "t-front", "busybox", "sh", "-c", probe)
    assert out.split() == [hostname, hostname]
    # From the other network: no name, and no route through the isolation rules either.
    web_ip = inspect("t-web")["NetworkSettings"]["IPAddress"]
    # (busybox 1.35's wget -T segfaults: `timeout` bounds the wait instead.)
    res = clab("exec", "t-db", "wget", "-q", "-O-", "http://t-web/hostname")
    assert res.returncode != 0 and "bad address" in res.stderr
    res = clab("exec", "t-db", "timeout", "2", "wget", "-q", "-O-", f"http://{web_ip}/hostname")
    assert res.returncode != 0
    # The default network has no names, as in Docker.
    res = clab("run", "--rm", "busybox", "ping", "-c1", "-W1", "t-web")
    assert res.returncode != 0 and "bad address" in res.stderr


def test_a_published_port_answers_on_loopback_and_on_the_bridge_address():
    port = free_port()
    web("t-pub", "-p", f"{port}:80")
    hostname = ok("exec", "t-pub", "cat", "/etc/hostname")
    assert fetch(f"http://127.0.0.1:{port}/hostname") == hostname
    gateway = inspect("t-pub")["NetworkSettings"]["Gateway"]
    assert fetch(f"http://{gateway}:{port}/hostname") == hostname
    assert f"0.0.0.0:{port}->80/tcp" in ok("ps")
    assert ok("port", "t-pub") == f"80/tcp -> 0.0.0.0:{port}\n"
    assert ok("port", "t-pub", "80/tcp") == f"0.0.0.0:{port}\n"
    res = clab("port", "t-pub", "81")
    assert res.returncode == 125 and "no public port '81'" in res.stderr
    assert any(f"publish *:{port}/tcp" in c for _, c in nat.rules())
    cid = inspect("t-pub")["Id"]
    ok("rm", "-f", "t-pub")
    assert not any(c.startswith(cid) for _, c in nat.rules()), "its rules went with it"
    assert links.wait_gone(links.veth_name(cid, "bridge"), timeout=2), "with its namespace"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2)


def test_a_random_host_port_and_udp():
    web("t-rand", "-p", "80")
    ports = inspect("t-rand")["NetworkSettings"]["Ports"]
    host_port = int(ports[0].split(":")[0])
    assert fetch(f"http://127.0.0.1:{host_port}/hostname")
    # busybox has no UDP server: a small one runs in the container's network namespace
    # (nsenter), a real process behind the container's address like any server inside.
    udp = free_port(socket.SOCK_DGRAM)
    ok("run", "-d", "--name", "t-udp", "-p", f"{udp}:5000/udp", "busybox", "sleep", "60")
    pid = inspect("t-udp")["State"]["Pid"]
    server = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
        "s.bind(('0.0.0.0', 5000)); print('ready', flush=True);"
        "data, peer = s.recvfrom(100); s.sendto(data.upper(), peer)"
    )
    proc = subprocess.Popen(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", server],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"hello-udp", ("127.0.0.1", udp))
            assert s.recv(100) == b"HELLO-UDP"
    finally:
        proc.kill()
        proc.wait()


def test_publish_all_maps_every_exposed_port(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nEXPOSE 80 8081/tcp\n")
    ok("build", "-q", "-t", "exposes", str(tmp_path))
    ok("run", "-d", "--name", "t-all", "-P", "exposes", "httpd", "-f", "-p", "80", "-h", "/etc")
    ports = inspect("t-all")["NetworkSettings"]["Ports"]
    assert sorted(p.split(":")[1] for p in ports) == ["80/tcp", "8081/tcp"]
    http = next(p for p in ports if p.endswith(":80/tcp"))
    assert fetch(f"http://127.0.0.1:{http.split(':')[0]}/hostname")


def test_ipam_under_20_parallel_runs_gives_distinct_addresses_and_takes_them_back():
    ok("network", "create", "--subnet", "10.231.40.0/24", "t-many")

    def one(i: int) -> str:
        return ok(
            "run", "-d", "--name", f"t-many-{i}", "--network", "t-many", "busybox", "sleep", "60"
        ).strip()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(one, range(20)))
    addresses = ipam.allocations("t-many")
    assert sorted(addresses) == sorted(ids)
    assert len(set(addresses.values())) == 20
    for cid in ids:
        assert inspect(cid)["NetworkSettings"]["IPAddress"] == addresses[cid]
    res = clab("network", "rm", "t-many")
    assert res.returncode == 125 and "attached endpoint" in res.stderr
    ok("rm", "-f", *ids)
    assert ipam.allocations("t-many") == {}
    ok("network", "rm", "t-many")
    assert not links.link_exists(links.bridge_name("t-many"))


def test_ip_and_add_host_and_dns_land_in_the_files():
    ok("network", "create", "--subnet", "10.231.41.0/24", "t-ip")
    out = ok(
        "run",
        "--rm",
        "--network",
        "t-ip",
        "--ip",
        "10.231.41.77",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "lab.example",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; cat /etc/hosts /etc/resolv.conf /etc/hostname",
    )
    assert "inet 10.231.41.77/24" in out
    assert "10.231.41.77\tbox" in out
    assert "10.1.2.3\tdb" in out and "10.231.41.1\tgw" in out
    assert "nameserver 10.9.9.9" in out and "search lab.example" in out
    assert "10.255.255.53" not in out  # --dns replaces the host's servers
    assert out.rstrip().endswith("box")


def test_network_none_host_and_container():
    out = ok("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out = ok("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert len(out.splitlines()) == len(host_links.splitlines())
    web("t-pod", "--hostname", "pod")
    ip = inspect("t-pod")["NetworkSettings"]["IPAddress"]
    out = ok(
        "run",
        "--rm",
        "--network",
        "container:t-pod",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; wget -q -O- http://127.0.0.1/hostname",
    )
    assert f"inet {ip}/" in out and "pod" in out  # one namespace: its httpd on our loopback


def test_an_exited_containers_veth_goes_with_its_namespace_unless_another_holds_it():
    """An exited container's veth is the kernel's to delete, with its network namespace, some
    milliseconds after the exit; its address goes back at once. A namespace that another
    container still holds keeps the veth: then it is deleted before ``stop`` returns."""
    cid = ok("create", "--dns", "127.0.0.1", "busybox", "true").strip()
    ok("start", "-a", cid)
    assert ipam.allocations("bridge") == {}
    ok("start", "-a", cid)  # plugged in again, under the same veth name
    assert links.wait_gone(links.veth_name(cid, "bridge"), timeout=2)
    web("t-owner")
    veth = links.veth_name(inspect("t-owner")["Id"], "bridge")
    ok(
        "run",
        "-d",
        "--name",
        "t-sharer",
        "--network",
        "container:t-owner",
        "busybox",
        "sleep",
        "60",
    )
    assert links.link_exists(veth)
    ok("stop", "-t", "0", "t-owner")  # t-sharer keeps the namespace (and the veth's peer)
    assert not links.link_exists(veth)
    assert ipam.allocations("bridge") == {}
    ok("stop", "-t", "0", "t-sharer")  # a guest no more
    guests = state.container_dir(inspect("t-owner")["Id"]) / "netns-guests"
    assert list(guests.iterdir()) == []


def test_connect_and_disconnect_a_running_container():
    ok("network", "create", "t-c1")
    ok("network", "create", "t-c2")
    ok("run", "-d", "--name", "t-aa", "--network", "t-c1", "busybox", "sleep", "60")
    web("t-bb", "--network", "t-c2")
    assert clab("exec", "t-aa", "ping", "-c1", "-W1", "t-bb").returncode != 0
    ok("network", "connect", "--alias", "bee", "t-c2", "t-aa")
    out = ok("exec", "t-aa", "sh", "-c", "ip -o -4 addr; wget -q -O- http://t-bb/hostname")
    assert "eth1" in out and "inet 172.31." in out
    ok("exec", "t-bb", "ping", "-c1", "-W1", "bee")  # its alias, seen from its new neighbour
    assert "t-aa" in json.dumps(json.loads(ok("network", "inspect", "t-c2")))
    ok("network", "disconnect", "t-c2", "t-aa")
    out = ok("exec", "t-aa", "ip", "-o", "link")
    assert "eth1" not in out
    assert list(ipam.allocations("t-c2")) == [inspect("t-bb")["Id"]]


def test_mac_address_is_eth0s():
    mac = "02:42:ac:11:00:99"
    out = ok(
        "run", "--rm", "--mac-address", mac.upper(), "busybox", "cat", "/sys/class/net/eth0/address"
    )
    assert out.strip() == mac
    cid = ok("run", "-d", "--mac-address", "02-42-ac-11-00-98", "busybox", "sleep", "30").strip()
    assert inspect(cid)["NetworkSettings"]["MacAddress"] == "02:42:ac:11:00:98"
    ok("rm", "-f", cid)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "99999:80"], "invalid port 99999: must be 1-65535"),
        (["-p", "80/sctp"], "use tcp or udp"),
        (["--network", "t-nosuch"], "network 't-nosuch' not found"),
        (["--ip", "10.0.0.5"], "--ip needs a user-defined network"),
        (["--add-host", "nocolon"], "expected NAME:IP"),
        (["--network", "none", "-p", "80"], "cannot be published"),
        (["--mac-address", "02:42:ac:11:00"], "write six hex bytes"),
        (["--mac-address", "zz:42:ac:11:00:01"], "write six hex bytes"),
        (["--mac-address", "01:00:5e:00:00:01"], "needs a unicast address"),  # multicast
        (["--mac-address", "00:00:00:00:00:00"], "needs a unicast address"),
        (["--network", "host", "--mac-address", "02:42:ac:11:00:01"], "need a bridge network"),
    ],
)
def test_bad_network_flags_are_refused_before_anything_exists(clab_root, args, message):
    res = clab("run", "--rm", *args, "busybox", "true")
    assert res.returncode == 125 and message in res.stderr, res.stderr
    assert clab("ps", "-aq").stdout == ""
    assert networks.ls() == []


def test_a_host_port_in_use_fails_the_start_and_leaves_nothing(clab_root):
    rules_before = set(nat.rules())
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        res = clab("run", "--rm", "-p", f"{port}:80", "busybox", "true")
        assert res.returncode == 125 and f"{port}" in res.stderr and "in use" in res.stderr
    assert clab("ps", "-aq").stdout == ""
    assert ipam.allocations("bridge") == {}
    published = {r for r in set(nat.rules()) - rules_before if " publish " in r[1]}
    assert published == set()  # (the default network's own rules stay until it goes)


def test_the_same_port_twice_is_refused_and_the_first_keeps_it():
    port = free_port()
    web("t-first", "-p", f"{port}:80")
    res = clab("run", "-d", "-p", f"{port}:80", "busybox", "true")
    assert res.returncode == 125 and "already published" in res.stderr
    assert fetch(f"http://127.0.0.1:{port}/hostname")


def test_doctor_releases_what_a_killed_supervisor_held():
    port = free_port()
    web("t-killed", "-p", f"{port}:80")
    rec = inspect("t-killed")
    os.kill(rec["State"]["Pid"], 9)
    sup = json.loads(
        (
            Path(os.environ["CONTAINERLAB_ROOT"]) / "containers" / rec["Id"] / "state.json"
        ).read_text()
    )["supervisor_pid"]
    os.kill(sup, 9)
    deadline = time.monotonic() + 10
    while "Exited" not in ok("ps", "-a"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    out = clab("system", "doctor").stdout
    assert "holds address" in out and f"published port {port}:80/tcp" in out
    ok("system", "doctor", "--fix")
    assert ipam.allocations("bridge") == {}
    assert not any(" publish " in c for _, c in nat.rules())

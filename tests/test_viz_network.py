"""The network picture, read from real containers on real networks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import pytest
from matplotlib.figure import Figure

from containerlab.network import links, networks
from containerlab.viz import network as vn
from tests.conftest import CLI

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")


def clab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


def ok(*args: str) -> str:
    res = clab(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def remove_all():
    """Containers first (they hold addresses), then networks: whatever a test left running."""
    yield
    ids = clab("ps", "-aq").stdout.split()
    if ids:
        clab("rm", "-f", *ids)
    for net in networks.ls():
        with contextlib.suppress(Exception):
            networks.remove(net.name)


# --- the sysfs readers --------------------------------------------------------------------------
def test_sysfs_readers_on_loopback():
    assert vn.ipv4_address("lo") == "127.0.0.1/8"
    assert not vn.is_bridge("lo")
    assert vn.master("lo") is None
    assert vn.bridge_ports("lo") == ()
    assert vn.ipv4_address("clab-no-such") == ""
    gone = vn.read_bridge("clab-no-such")
    assert (gone.present, gone.ports, gone.address) == (False, (), "")


# --- containers on networks ---------------------------------------------------------------------
def test_topology_of_networks_containers_and_ports(remove_all):
    ok("network", "create", "t-vz")
    ok("run", "-d", "--name", "vz-web", "-p", "80", "busybox", "sleep", "300")
    ok("run", "-d", "--name", "vz-a", "--network", "t-vz", "busybox", "sleep", "300")
    ok("run", "-d", "--name", "vz-b", "--network", "t-vz", "busybox", "sleep", "300")
    ok("network", "connect", "bridge", "vz-b")
    ok("run", "-d", "--name", "vz-side", "--network", "container:vz-a", "busybox", "sleep", "300")
    ok("run", "-d", "--name", "vz-none", "--network", "none", "busybox", "sleep", "300")
    ok("run", "-d", "--name", "vz-host", "--network", "host", "busybox", "sleep", "300")

    topo = vn.topology()
    default = networks.get("bridge")
    # The default network first, then the user networks by name.
    assert [b.name for b in topo.bridges] == [default.bridge, "clab-t-vz"]
    user = topo.bridge("t-vz")
    assert user is topo.bridge("clab-t-vz")
    assert user.present and user.up and user.network == "t-vz"
    assert user.address == f"{networks.get('t-vz').gateway}/24"
    assert [c.name for c in topo.containers] == [
        "vz-web", "vz-a", "vz-b", "vz-side", "vz-none", "vz-host"
    ]  # fmt: skip

    for name in ("vz-web", "vz-a", "vz-b"):
        [doc] = json.loads(ok("inspect", name))
        c = topo.container(name)
        assert c.mode == "bridge" and c.short_id == doc["Id"][:12]
        for e in c.endpoints:
            want = doc["NetworkSettings"]["Networks"][e.network]
            assert e.address.split("/")[0] == want["IPAddress"]
            assert e.mac == want["MacAddress"] and e.veth == want["EndpointID"]
            # The kernel agrees: the host end is a port of the network's bridge.
            assert e.plugged and vn.master(e.veth) == e.bridge
            assert e.veth in topo.bridge(e.network).ports
    b = topo.container("vz-b")
    assert [(e.ifname, e.network) for e in b.endpoints] == [("eth0", "t-vz"), ("eth1", "bridge")]
    assert set(user.ports) == {e.veth for n in ("vz-a", "vz-b") for e in topo.container(n).endpoints
                               if e.network == "t-vz"}  # fmt: skip
    assert topo.stray_ports(user) == []

    [port] = topo.container("vz-web").published
    assert (port.host_ip, port.container_port, port.proto) == ("0.0.0.0", 80, "tcp")
    assert f"0.0.0.0:{port.host_port}->80/tcp" in ok("ps")
    assert topo.container("vz-side").mode == "container:vz-a"
    assert topo.container("vz-side").endpoints == ()
    assert (topo.container("vz-none").mode, topo.container("vz-host").mode) == ("none", "host")

    text = vn.describe(topo)
    a = topo.container("vz-a").endpoints[0]
    assert f"bridge clab-t-vz (network 't-vz') {user.address}, up, 2 port(s)" in text
    assert f"  {a.veth} <-> vz-a:eth0 {a.address}" in text
    assert f"  0.0.0.0:{port.host_port}/tcp -> vz-web " in text
    assert "  vz-side: --network container:vz-a (vz-a's interfaces)" in text
    assert "  vz-none: --network none (only lo)" in text
    assert "mac " not in text and f"mac {a.mac}" in vn.describe(topo, macs=True)

    fig = vn.picture(topo)
    assert isinstance(fig, Figure)
    drawn = vn.gids(fig)
    assert {f"bridge:{b.name}" for b in topo.bridges} <= drawn
    assert {f"container:{c.name}" for c in topo.containers} <= drawn
    assert {f"veth:{e.veth}" for c in topo.containers for e in c.endpoints} <= drawn
    assert {f"port:{port.host_port}/tcp", f"dnat:{port.host_port}/tcp", "shares:vz-side"} <= drawn
    assert "host" in drawn and not any(g.startswith("stub:") for g in drawn)


def test_a_stopped_container_has_no_interface(remove_all):
    ok("network", "create", "t-vz2")
    ok("run", "-d", "--name", "vz-stop", "--network", "t-vz2", "busybox", "sleep", "300")
    ok("stop", "-t", "1", "vz-stop")
    # The supervisor records the exit, then unplugs: give it a moment to finish.
    deadline = time.monotonic() + 10
    while vn.topology(all_containers=True).container("vz-stop").endpoints:
        assert time.monotonic() < deadline, "the stopped container kept its endpoint"
        time.sleep(0.05)
    assert vn.topology().containers == ()  # running ones only, as `ps`
    topo = vn.topology(all_containers=True)
    c = topo.container("vz-stop")
    assert c.status == "exited" and c.endpoints == () and c.published == ()
    assert topo.bridge("t-vz2").ports == ()
    assert "vz-stop: --network bridge (not plugged in)" in vn.describe(topo)
    assert "container:vz-stop" in vn.gids(vn.picture(topo))
    with pytest.raises(KeyError, match="no container 'nope'"):
        topo.container("nope")
    with pytest.raises(KeyError, match="no bridge or network 'nope'"):
        topo.bridge("nope")


# --- a bridge made by hand ----------------------------------------------------------------------
def test_a_bridge_made_by_hand_and_its_stray_port():
    br, veth, ns = "clab-vz-br", "clab-vz-v0", "clab-vz-ns"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with links.bridge(br, "10.99.77.1/24"):
            links.attach(br, ns, "10.99.77.2/24", None, veth)
            topo = vn.topology(extra_bridges=[br], peers={veth: "netns clab-vz-ns"})
            (b,) = topo.bridges
            assert (b.name, b.network, b.address, b.subnet) == (
                br,
                None,
                "10.99.77.1/24",
                "10.99.77.0/24",
            )
            assert b.ports == (veth,) and topo.stray_ports(b) == [veth]
            assert f"  {veth} <-> netns clab-vz-ns" in vn.describe(topo)
            assert "not a containerlab network" in vn.describe(topo)
            drawn = vn.gids(vn.picture(topo, title="by hand"))
            assert {f"bridge:{br}", f"stub:{veth}", f"veth:{veth}"} <= drawn
            # Unlabelled, it is still drawn and described, as a port of no container.
            assert "(not a container of this state root)" in vn.describe(
                vn.topology(extra_bridges=[br])
            )
    finally:
        links.delete_link(veth)
        subprocess.run(["ip", "netns", "del", ns], check=False)

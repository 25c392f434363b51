"""`containerlab network` through the real CLI, and `system doctor` on network leftovers.

Every test checks that it left no clab link, bridge, netns, nft table or iptables chain
behind (besides the root conftest's snapshot), with the same tools a learner would use.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from containerlab.network import ipam, links, nat, networks
from tests.conftest import CLI

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="networking needs root")


def clab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


def ok(*args: str) -> str:
    res = clab(*args)
    assert res.returncode == 0, f"{args}: rc={res.returncode} {res.stderr}"
    return res.stdout


def _host_leftovers() -> list[str]:
    """Every clab thing on the host, as `ip -o link`, `ip netns`, nft and iptables show it."""
    out = []
    res = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    out += [f"link: {line}" for line in res.stdout.splitlines() if ": clab" in line]
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    out += [f"netns: {line}" for line in res.stdout.splitlines() if "clab" in line]
    res = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    out += [f"nft: {line.strip()}" for line in res.stdout.splitlines() if "clab" in line.lower()]
    for table in ("nat", "filter"):
        res = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        out += [f"iptables: {line}" for line in res.stdout.splitlines() if "CLAB" in line]
    return out


@pytest.fixture(autouse=True)
def nothing_left():
    """No clab link, netns or rule left by the test. What was there before is not ours to
    judge: a lab running on this machine has its default bridge and rules."""
    before = set(_host_leftovers())
    yield
    try:
        assert set(_host_leftovers()) - before == set()
    finally:  # a failed test must not fail every later one with its leftovers
        for net in networks.ls():
            networks.remove(net.name)


def test_create_ls_inspect_rm():
    assert ok("network", "create", "t-cli") == "t-cli\n"
    assert ok("network", "create", "--subnet", "10.231.20.0/24", "--internal", "t-int") == "t-int\n"
    lines = ok("network", "ls").splitlines()
    assert lines[0].split() == ["NAME", "BRIDGE", "DRIVER", "SUBNET", "GATEWAY", "INTERNAL"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["t-int"] == [
        "t-int",
        "clab-t-int",
        "bridge",
        "10.231.20.0/24",
        "10.231.20.1",
        "yes",
    ]
    assert rows["t-cli"][1] == "clab-t-cli" and rows["t-cli"][5] == "no"
    assert ok("network", "ls", "-q").split() == ["t-cli", "t-int"]

    # The kernel side exists as the table says: the bridge, with the gateway on it.
    addr = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "clab-t-int"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "10.231.20.1/24" in addr

    [doc] = json.loads(ok("network", "inspect", "t-int"))
    assert doc["Name"] == doc["Id"] == "t-int"
    assert doc["Driver"] == "bridge"
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.231.20.0/24", "Gateway": "10.231.20.1"}]
    assert doc["Internal"] is True and doc["Containers"] == {}
    assert doc["Options"]["com.docker.network.bridge.name"] == "clab-t-int"
    assert ok("network", "inspect", "-f", "{{.Options}} {{.Internal}}", "t-cli").strip() == (
        '{"com.docker.network.bridge.name": "clab-t-cli"} False'
    )

    assert ok("network", "rm", "t-cli", "t-int").split() == ["t-cli", "t-int"]
    assert ok("network", "ls", "-q") == ""
    assert links.clab_links() == [] and nat.rules() == []


def test_overlapping_subnet_refused_and_nothing_created():
    ok("network", "create", "--subnet", "10.231.21.0/24", "t-a")
    before = (ok("network", "ls"), links.clab_links(), nat.rules())
    res = clab("network", "create", "--subnet", "10.231.21.128/25", "t-b")
    assert res.returncode == 125
    assert res.stderr == (
        "containerlab: subnet 10.231.21.128/25 overlaps network 't-a' (10.231.21.0/24);"
        " pick another --subnet or leave it out\n"
    )
    assert res.stdout == ""
    assert (ok("network", "ls"), links.clab_links(), nat.rules()) == before
    assert not (ipam.ipam_dir() / "t-b.json").exists()
    res = clab("network", "create", "--subnet", "10.231.300.0/24", "t-c")
    assert res.returncode == 125 and "invalid subnet '10.231.300.0/24'" in res.stderr
    ok("network", "rm", "t-a")


def test_rm_unknown_and_rm_with_endpoints():
    res = clab("network", "rm", "t-nope")
    assert res.returncode == 125
    assert res.stderr == (
        "containerlab: network 't-nope' not found; see `containerlab network ls`\n"
    )
    res = clab("network", "inspect", "t-nope")
    assert res.returncode == 1 and "network 't-nope' not found" in res.stderr

    # An endpoint recorded in the pool (as `run --network` will record one) blocks rm and
    # keeps prune's hands off; the network is removed once the endpoint is gone.
    ok("network", "create", "t-busy")
    ok("network", "create", "t-idle")
    ipam.allocate("t-busy", "c" * 64)
    res = clab("network", "rm", "t-busy")
    assert res.returncode == 125
    assert "network 't-busy' has 1 attached endpoint(s)" in res.stderr
    assert "remove or disconnect them first" in res.stderr
    [doc] = json.loads(ok("network", "inspect", "t-busy"))
    assert list(doc["Containers"]) == ["c" * 64]
    assert doc["Containers"]["c" * 64]["IPv4Address"].endswith("/24")
    networks.ensure_default()  # prune never removes the default network
    assert ok("network", "prune").split() == ["Deleted", "Networks:", "t-idle"]
    assert ok("network", "ls", "-q").split() == ["bridge", "t-busy"]
    ipam.release("t-busy", "c" * 64)
    assert ok("network", "prune").split() == ["Deleted", "Networks:", "t-busy"]
    assert ok("network", "prune").strip() == "No unused networks."
    ok("network", "rm", "bridge")


def test_doctor_removes_an_orphaned_network(clab_root):
    ok("network", "create", "--subnet", "10.231.22.0/24", "t-orphan")
    ok("network", "create", "--subnet", "10.231.23.0/24", "t-kept")
    assert ok("system", "doctor").startswith("nothing left behind")
    # A container of this root that is gone without cleaning up: its address, rules, veth.
    gone = "d" * 64
    ipam.allocate("t-kept", gone)
    nat.add_rules(nat.publish_rules(gone, nat.PortMapping(None, 40231, 80), "10.231.23.2"))
    # The record of t-orphan is deleted by hand: its bridge and rules have no owner now.
    (clab_root / "network" / "networks" / "t-orphan.json").unlink()
    # Another state root's rule (an owner nothing here names) must be left alone.
    nat.add_rules(nat.network_rules("network:t-other", "clab-t-other", "10.231.24.0/24", True))
    try:
        res = clab("system", "doctor")
        assert res.returncode == 1, res.stdout + res.stderr
        out = res.stdout
        assert "link       clab-t-orphan" in out
        assert "carries only the gateway 10.231.22.1/24" in out
        assert "rule       network:clab-t-orphan" in out
        assert "pool       t-orphan" in out
        assert f"rule       {gone}" in out
        assert f"address    t-kept/{gone[:12]}" in out
        # The recorded network's bridge and rules are not leftovers; t-other is not ours.
        assert "clab-t-kept" not in out and "t-other" not in out
        assert "5 leftover(s)" in out  # link, two rules, pool, address

        fix = ok("system", "doctor", "--fix")
        assert "removed link clab-t-orphan" in fix
        assert "removed 4 firewall rule(s) of network:clab-t-orphan" in fix
        assert f"removed 2 firewall rule(s) of {gone}" in fix
        assert "removed the address pool of network t-orphan" in fix
        assert ok("system", "doctor").startswith("nothing left behind")
        assert links.clab_links() == ["clab-t-kept"]
        assert {c.split()[0] for _, c in nat.rules()} == {"network:clab-t-kept", "network:t-other"}
        assert ipam.allocations("t-kept") == {}
        assert not (ipam.ipam_dir() / "t-orphan.json").exists()
    finally:
        nat.remove("network:t-other")
        nat.remove(gone)
        networks.remove("t-kept")
        links.delete_link("clab-t-orphan")
        nat.remove("network:clab-t-orphan")

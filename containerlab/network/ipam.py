"""IP address management: which container holds which address of a network.

Docker keeps this in its daemon's memory; containerlab has no daemon (several CLIs can run
at once), so the allocations live in one JSON file per network under the state root and
every read-modify-write holds an exclusive ``flock`` on a lock file next to it. flock locks
belong to the open file, so they work across processes and the kernel drops them when a
process dies: a crashed allocator can never leave the network locked.

The network address and the broadcast address are never handed out (they are not host
addresses), and the gateway (``.1``, the bridge's own address) is reserved.

Addresses are handed out *serially*, as Docker's IPAM (libnetwork since 2017) and CNI's
host-local do: each is the next free one after the last handed out, wrapping around at the
end of the subnet, so an address given back is not given again until the pool has come round.
A neighbour may still hold the old owner's MAC for it in its ARP cache, and the old veth
may still exist for a few milliseconds while the kernel destroys the exited container's
network namespace (see ``networks.disconnect``).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

from containerlab import paths
from containerlab.errors import NetworkError


def ipam_dir() -> Path:
    """Where the allocation files live (persistent: addresses survive a reboot, as Docker's)."""
    return paths.state_root() / "network" / "ipam"


def _file(network: str) -> Path:
    return ipam_dir() / f"{network}.json"


@contextlib.contextmanager
def _locked(network: str) -> Iterator[dict]:
    """The network's allocation table, locked; written back if the block ends normally."""
    ipam_dir().mkdir(parents=True, exist_ok=True)
    lock = os.open(ipam_dir() / f"{network}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _file(network)
        table = json.loads(path.read_text()) if path.exists() else None
        if table is None:
            raise NetworkError(f"network {network!r} has no address pool; create the network")
        before = json.dumps(table, sort_keys=True)
        yield table
        if json.dumps(table, sort_keys=True) != before:
            # write-then-rename: a crash mid-write leaves the old table, never half of one.
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(table, indent=2, sort_keys=True))
            os.replace(tmp, path)
    finally:
        os.close(lock)  # closing the last descriptor releases the flock


def create_pool(network: str, subnet: str, gateway: str) -> None:
    """Start the allocation table of a network; its gateway is reserved from the start."""
    net = ipaddress.IPv4Network(subnet)
    gw = ipaddress.IPv4Address(gateway)
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise NetworkError(f"gateway {gw} is not a host address of {net}; pick one inside it")
    if net.num_addresses < 4:
        raise NetworkError(f"subnet {net} is too small: use a /30 or larger")
    ipam_dir().mkdir(parents=True, exist_ok=True)
    table = {"subnet": str(net), "gateway": str(gw), "allocations": {}}
    tmp = _file(network).with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2, sort_keys=True))
    os.replace(tmp, _file(network))


def delete_pool(network: str) -> None:
    """Forget a network's allocations (the network is being removed)."""
    for suffix in (".json", ".lock", ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            (ipam_dir() / f"{network}{suffix}").unlink()


def allocate(network: str, owner: str, ip: str | None = None) -> ipaddress.IPv4Interface:
    """Give ``owner`` (a container id) an address of ``network``: ``ip`` if asked (``--ip``),
    else the next free one after the last handed out (see the module's docstring). Returns it
    with the subnet's prefix ("172.30.0.2/16").

    The same owner asking again gets its address back (an idempotent retry after a crash).
    """
    with _locked(network) as table:
        net = ipaddress.IPv4Network(table["subnet"])
        taken = {ipaddress.IPv4Address(a): o for o, a in table["allocations"].items()}
        taken[ipaddress.IPv4Address(table["gateway"])] = "the gateway"
        if owner in table["allocations"]:
            have = table["allocations"][owner]
            if ip is None or ip == have:
                return ipaddress.IPv4Interface(f"{have}/{net.prefixlen}")
            raise NetworkError(f"{owner} already has {have} on network {network!r}")
        if ip is not None:
            try:
                want = ipaddress.IPv4Address(ip)
            except ValueError:
                raise NetworkError(f"invalid ip {ip!r}: expected an IPv4 address") from None
            if want not in net or want in (net.network_address, net.broadcast_address):
                raise NetworkError(
                    f"ip {want} is not a usable address of network {network!r} ({net});"
                    f" pick one between {net.network_address + 1} and {net.broadcast_address - 1}"
                )
            if want in taken:
                raise NetworkError(
                    f"ip {want} is already taken on network {network!r} (by {taken[want]});"
                    " pick another or leave --ip out"
                )
        else:
            want = _next_free(net, taken, table.get("last"))
            if want is None:
                raise NetworkError(
                    f"network {network!r} ({net}) has no free address left; remove a container"
                    " or create a network with a larger subnet"
                )
            table["last"] = str(want)
        table["allocations"][owner] = str(want)
        return ipaddress.IPv4Interface(f"{want}/{net.prefixlen}")


def _next_free(
    net: ipaddress.IPv4Network, taken: dict, last: str | None
) -> ipaddress.IPv4Address | None:
    """The first host address of ``net`` after ``last`` that is not taken, wrapping around."""
    first, end = int(net.network_address) + 1, int(net.broadcast_address)  # hosts: first..end-1
    start = first
    if last is not None and first <= int(ipaddress.IPv4Address(last)) < end:
        start = int(ipaddress.IPv4Address(last)) + 1
    busy = {int(a) for a in taken}
    for n in itertools.chain(range(start, end), range(first, start)):
        if n not in busy:
            return ipaddress.IPv4Address(n)
    return None


def release(network: str, owner: str) -> str | None:
    """Give ``owner``'s address back (on ``rm``); the address, or None if it held none."""
    if not _file(network).exists():
        return None
    with _locked(network) as table:
        return table["allocations"].pop(owner, None)


def allocations(network: str) -> dict[str, str]:
    """Owner -> address for every container on ``network`` (the gateway not included)."""
    if not _file(network).exists():
        return {}
    with _locked(network) as table:
        return dict(table["allocations"])

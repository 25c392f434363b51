"""Names: the /etc/hosts and /etc/resolv.conf every container gets.

Docker gives each container its own copies of these files, bind-mounted over the image's:
an image's /etc/hosts knows nothing of the container's address or of its neighbours.

**Finding containers by name.** On a user-defined network Docker runs a small DNS server in
the daemon (at 127.0.0.11 in every container) that answers with the addresses of the other
containers and their aliases. containerlab has no daemon, so it does what Docker did before
it had one (``--link``): the names go into each container's /etc/hosts. The host keeps each
container's file under its record; when a container joins or leaves a network, the files of
every container on that network are rewritten *in place* (same inode: the bind mount inside
the container points at the inode, so a rename-over would never be seen). The C library
reads /etc/hosts on every lookup, so a neighbour's name works as soon as it starts.

As in Docker, the default network ("bridge") does not do this: containers there find each
other by address only. That is why ``docker network create`` is the first thing Docker's
docs tell you to do for a multi-container app.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from containerlab import paths
from containerlab.errors import NetworkError

#: The name ``--add-host NAME:host-gateway`` maps to the container's gateway (the host side).
HOST_GATEWAY = "host-gateway"
#: Docker's fallback when the host only names resolvers a container cannot reach.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

_LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def parse_add_host(spec: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME=IP``, or ``NAME:host-gateway``) as (name, ip)."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if not name or not ip or any(c.isspace() for c in name):
        raise NetworkError(f"invalid --add-host {spec!r}: expected NAME:IP, e.g. db:10.0.0.5")
    if ip != HOST_GATEWAY:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise NetworkError(
                f"invalid --add-host {spec!r}: {ip!r} is not an IP address (or {HOST_GATEWAY})"
            ) from None
    return name, ip


def hosts_text(
    hostname: str,
    own: Sequence[str],
    peers: Iterable[tuple[str, Sequence[str]]] = (),
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """The /etc/hosts of one container.

    ``own``: its addresses (its hostname maps to each; none: to 127.0.0.1, as with
    ``--network none``); ``peers``: (address, names) of the containers it can reach by name;
    ``extra``: ``--add-host`` (name, address) pairs, last so that they read as the user's.
    """
    lines = [_LOCALHOST]
    for ip in own or ["127.0.1.1"]:
        lines.append(f"{ip}\t{hostname}\n")
    for ip, names in peers:
        if names:
            lines.append(f"{ip}\t{' '.join(names)}\n")
    for name, ip in extra:
        lines.append(f"{ip}\t{name}\n")
    return "".join(lines)


def resolv_text(
    host_text: str, dns: Sequence[str] = (), search: Sequence[str] = (), *, own_netns: bool = True
) -> str:
    """The /etc/resolv.conf of one container, from the host's (``host_text``).

    ``--dns``/``--dns-search`` replace the host's servers/search list. Otherwise the host's
    are kept, except loopback servers (systemd-resolved's 127.0.0.53, a local dnsmasq) when
    the container has a network namespace of its own: its 127.0.0.1 is itself, not the
    host. If nothing is left, Docker's fallback servers are written (and a comment says so).
    """
    servers, searches, options, notes = [], [], [], []
    for line in host_text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver":
            ip = words[1]
            if own_netns and (ip.startswith("127.") or ip == "::1"):
                notes.append(f"# {ip} left out: it is the host's loopback, not reachable here")
                continue
            servers.append(ip)
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options.append(" ".join(words[1:]))
    if dns:
        servers = list(dns)
    if search:
        searches = list(search)
    if not servers:
        notes.append("# the host names no usable server: Docker's defaults")
        servers = list(FALLBACK_NAMESERVERS)
    out = notes + [f"nameserver {s}" for s in servers]
    if searches:
        out.append("search " + " ".join(searches))
    out += [f"options {o}" for o in options]
    return "\n".join(out) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Replace a file's content without replacing the file (see the module docstring).

    Truncate-and-write is not atomic: a lookup at that instant may see an empty file. Docker
    has the same window when it updates these files; a retry of the lookup sees the new one.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@contextlib.contextmanager
def hosts_lock() -> Iterator[None]:
    """One writer of hosts files at a time: a container computing its neighbours' files from
    the address pools must not race another one joining (the last writer would win with a
    stale view)."""
    d = paths.state_root() / "network"
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "hosts.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

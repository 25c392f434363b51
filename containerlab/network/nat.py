"""NAT: containers reaching out (masquerade) and the outside reaching in (published ports).

Containers hold private addresses behind their bridge. Going out, the host rewrites their
source address to its own (``masquerade``, source NAT); coming in, a packet for a published
host port has its destination rewritten to the container (``dnat``, destination NAT).
Conntrack remembers each rewrite and undoes it on the replies.

Rules go to nftables through its JSON interface (``nft -j -f -``), all in one table
``ip clab`` that containerlab owns, so nothing of anybody else's ruleset is touched and the
whole lot can be listed or dropped at once. When ``nft`` is missing, the same rules go to
iptables in chains named ``CLAB-*`` jumped to from the built-in ones. Every rule carries a
comment "OWNER WHAT": ``remove(owner)`` deletes exactly the rules of one container or one
network, and ``rules()`` lists them all (``system doctor``).

**Published ports from the host's own loopback.** A connection to 127.0.0.1:8080 from the
host never crosses PREROUTING (it is locally generated), so the DNAT rule is also put in the
OUTPUT hook. After that DNAT the packet has source 127.0.0.1 and leaves through the bridge,
which the kernel refuses (a "martian": loopback addresses must not appear on a wire) unless
``route_localnet`` is set on that interface; and the container would answer 127.0.0.1,
itself. So containerlab sets ``net.ipv4.conf.<bridge>.route_localnet=1`` and masquerades
127.0.0.0/8 leaving through the bridge (the container sees the bridge address as the peer).
This is Docker's ``--userland-proxy=false`` path, chosen over a userland proxy because it
needs no process per port (nothing to supervise, nothing to leak, no copy through user
space), and the setting lives on our own bridge: it vanishes with the bridge and never
changes how the rest of the host treats loopback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from containerlab import syscalls
from containerlab.errors import NetworkError
from containerlab.network.links import set_sysctl

#: The nftables table containerlab owns (family ip: container subnets are IPv4).
TABLE = "clab"
#: Prefix of the iptables chains used when nft is missing.
CHAIN_PREFIX = "CLAB-"

# hook -> (nft chain type, priority, iptables table): dstnat -100, srcnat 100, filter 0.
_CHAINS = {
    "prerouting": ("nat", -100, "nat"),
    "output": ("nat", -100, "nat"),
    "postrouting": ("nat", 100, "nat"),
    "forward": ("filter", 0, "filter"),
}


# --- published ports --------------------------------------------------------------------------
@dataclass(frozen=True)
class PortMapping:
    """One ``-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`` option."""

    host_ip: str | None  # the host address to listen on; None: every address of the host
    host_port: int  # 0 when only CONTAINER_PORT was given: a free port is picked
    container_port: int  # the port the process inside listens on
    proto: str = "tcp"  # "tcp" or "udp"

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}:{self.container_port}/{self.proto}"


def _port(text: str, what: str = "port") -> int:
    if not text.isdigit():
        raise NetworkError(f"invalid {what} {text!r}: must be a number 1-65535")
    n = int(text)
    if not 1 <= n <= 65535:
        raise NetworkError(f"invalid {what} {n}: must be 1-65535")
    return n


def parse_publish(spec: str) -> PortMapping:
    """Parse a ``-p`` value: ``8080:80``, ``127.0.0.1:8080:80/tcp``, ``53:53/udp``, ``80``."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise NetworkError(f"invalid protocol {proto!r} in -p {spec}: use tcp or udp")
    parts = body.split(":")
    host_ip: str | None = None
    if len(parts) == 3:
        host_ip, host, ctr = parts
        try:
            host_ip = str(ipaddress.IPv4Address(host_ip)) if host_ip else None
        except ValueError:
            raise NetworkError(f"invalid host address {host_ip!r} in -p {spec}") from None
    elif len(parts) == 2:
        host, ctr = parts
    elif len(parts) == 1:
        host, ctr = "", parts[0]
    else:
        raise NetworkError(f"invalid -p {spec}: use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]")
    host_port = _port(host) if host else 0
    return PortMapping(host_ip, host_port, _port(ctr), proto)


def _socket(proto: str) -> socket.socket:
    return socket.socket(
        socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    )


def free_port(proto: str = "tcp", host_ip: str | None = None) -> int:
    """A host port nobody uses right now, as the kernel picks one for bind(port 0)."""
    with _socket(proto) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        return s.getsockname()[1]


def check_port_free(mapping: PortMapping) -> None:
    """Refuse a host port some process already listens on, by trying to bind it ourselves.

    A DNAT rule would silently steal that port's traffic from the process; Docker refuses
    too ("port is already allocated").
    """
    with _socket(mapping.proto) as s:
        if mapping.proto == "tcp":
            # A closing connection's TIME_WAIT must not count as "in use".
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((mapping.host_ip or "0.0.0.0", mapping.host_port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise NetworkError(
                    f"host port {mapping.host_port}/{mapping.proto} is already in use;"
                    " stop what listens on it or publish on another port"
                ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(
                    f"host address {mapping.host_ip} is not an address of this host;"
                    " use one of `ip -4 addr` or leave it out"
                ) from None
            raise


# --- rules, backend-neutral ---------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One firewall rule, in both dialects (they express the same match and action)."""

    hook: str  # prerouting, output, postrouting or forward
    comment: str  # "OWNER WHAT": who removes it, and what it is for
    nft: str  # the rule's expressions as nftables JSON (a list, serialized: hashable)
    iptables: tuple[str, ...]  # the same as iptables arguments after "-A CHAIN"

    @property
    def owner(self) -> str:
        return self.comment.split(" ", 1)[0]


def _m(left: dict, right: object, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _saddr(net: str) -> tuple[dict, list[str]]:
    n = ipaddress.IPv4Network(net)
    right = {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}
    return _m({"payload": {"protocol": "ip", "field": "saddr"}}, right), ["-s", str(n)]


def _ifname(key: str, name: str, neg: bool = False) -> tuple[dict, list[str]]:
    flag = "-i" if key == "iifname" else "-o"
    ipt_name = name[:-1] + "+" if name.endswith("*") else name
    return _m({"meta": {"key": key}}, name, "!=" if neg else "=="), (
        ["!", flag, ipt_name] if neg else [flag, ipt_name]
    )


def _dst(host_ip: str | None) -> tuple[dict, list[str]]:
    if host_ip:
        return _m({"payload": {"protocol": "ip", "field": "daddr"}}, host_ip), ["-d", host_ip]
    # Any address of the host (eth0's, the bridges', 127.0.0.1): fib says which are local.
    return _m({"fib": {"flags": ["daddr"], "result": "type"}}, "local"), [
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
    ]


def _dport(proto: str, port: int) -> tuple[dict, list[str]]:
    return _m({"payload": {"protocol": proto, "field": "dport"}}, port), [
        "-p",
        proto,
        "--dport",
        str(port),
    ]


def _rule(
    hook: str, comment: str, matches: Sequence[tuple[dict, list[str]]], verdict: str, **kw
) -> Rule:
    if verdict == "dnat":
        nft_v: dict = {"dnat": {"addr": kw["addr"], "port": kw["port"]}}
        ipt_v = ["-j", "DNAT", "--to-destination", f"{kw['addr']}:{kw['port']}"]
    else:
        nft_v = {verdict: None}
        ipt_v = ["-j", verdict.upper()]
    expr = [m[0] for m in matches] + [nft_v]
    args = [a for m in matches for a in m[1]] + ["-m", "comment", "--comment", comment] + ipt_v
    return Rule(hook, comment, json.dumps(expr), tuple(args))


def _check_owner(owner: str) -> None:
    if not owner or not re.fullmatch(r"[A-Za-z0-9_.:-]+", owner):
        raise NetworkError(f"invalid rule owner {owner!r}: letters, digits and _.:- only")


def network_rules(owner: str, bridge: str, subnet: str, internal: bool) -> list[Rule]:
    """The rules a network needs: isolation from other clab bridges, masquerade out, and the
    loopback masquerade that makes published ports answer on 127.0.0.1."""
    _check_owner(owner)
    br_in, br_out = _ifname("iifname", bridge), _ifname("oifname", bridge)
    # Routed traffic bridge -> same bridge (a container reaching a port published on the
    # gateway) is fine; return before the drops below.
    rules = [_rule("forward", f"{owner} same-bridge", [br_in, br_out], "return")]
    if internal:
        # --internal: no way in or out except through the bridge itself.
        rules += [
            _rule("forward", f"{owner} internal-out", [br_in], "drop"),
            _rule("forward", f"{owner} internal-in", [br_out], "drop"),
        ]
    else:
        # Two networks must not reach each other through the host's routing (Docker's
        # DOCKER-ISOLATION chains): drop from this bridge to any other clab bridge.
        rules.append(
            _rule("forward", f"{owner} isolate", [br_in, _ifname("oifname", "clab*")], "drop")
        )
        rules.append(
            _rule(
                "postrouting",
                f"{owner} masquerade",
                [_saddr(subnet), _ifname("oifname", bridge, neg=True)],
                "masquerade",
            )
        )
    rules.append(
        _rule("postrouting", f"{owner} loopback", [_saddr("127.0.0.0/8"), br_out], "masquerade")
    )
    return rules


def publish_rules(owner: str, mapping: PortMapping, container_ip: str) -> list[Rule]:
    """The DNAT rules of one published port: PREROUTING for traffic from other hosts and
    containers, OUTPUT for the host's own connections (loopback included)."""
    _check_owner(owner)
    if not mapping.host_port:
        raise NetworkError(f"-p {mapping}: pick the host port first (free_port)")
    ip = str(ipaddress.IPv4Address(container_ip.split("/")[0]))
    what = f"{owner} publish {mapping.host_ip or '*'}:{mapping.host_port}/{mapping.proto}"
    matches = [_dst(mapping.host_ip), _dport(mapping.proto, mapping.host_port)]
    return [
        _rule(hook, what, matches, "dnat", addr=ip, port=mapping.container_port)
        for hook in ("prerouting", "output")
    ]


# --- backends ---------------------------------------------------------------------------------
def _run(
    argv: list[str], input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    syscalls.explain(
        f"firewall: {argv[0]}", shlex.join(argv) + (f" <<< '{input}'" if input else "")
    )
    res = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NetworkError(f"{shlex.join(argv)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res


class NftBackend:
    """Rules in the nftables table ``ip clab``, written as JSON (``nft -j``)."""

    name = "nftables"

    def _apply(self, commands: list[dict]) -> None:
        _run(["nft", "-j", "-f", "-"], json.dumps({"nftables": commands}))

    def _ensure(self) -> None:
        cmds: list[dict] = [{"add": {"table": {"family": "ip", "name": TABLE}}}]
        for hook, (typ, prio, _) in _CHAINS.items():
            chain = {"family": "ip", "table": TABLE, "name": hook, "type": typ, "hook": hook}
            cmds.append({"add": {"chain": {**chain, "prio": prio, "policy": "accept"}}})
        self._apply(cmds)  # "add" of an existing table or chain is a no-op

    def _listed(self) -> list[dict]:
        res = _run(["nft", "-j", "list", "table", "ip", TABLE], check=False)
        if res.returncode != 0:
            return []  # no table: no rules
        return [i["rule"] for i in json.loads(res.stdout)["nftables"] if "rule" in i]

    def add(self, rules: Sequence[Rule]) -> None:
        self._ensure()
        self._apply(
            [
                {
                    "add": {
                        "rule": {
                            "family": "ip",
                            "table": TABLE,
                            "chain": r.hook,
                            "expr": json.loads(r.nft),
                            "comment": r.comment,
                        }
                    }
                }
                for r in rules
            ]
        )

    def listed(self) -> list[tuple[str, str]]:
        return [(r["chain"], r.get("comment", "")) for r in self._listed()]

    def remove(self, owner: str) -> int:
        mine = [r for r in self._listed() if r.get("comment", "").split(" ", 1)[0] == owner]
        if mine:
            self._apply(
                [
                    {
                        "delete": {
                            "rule": {
                                "family": "ip",
                                "table": TABLE,
                                "chain": r["chain"],
                                "handle": r["handle"],
                            }
                        }
                    }
                    for r in mine
                ]
            )
        if not self._listed():
            self.remove_all()  # an empty table is still a leftover: drop it
        return len(mine)

    def remove_all(self) -> None:
        if _run(["nft", "list", "table", "ip", TABLE], check=False).returncode == 0:
            self._apply([{"delete": {"table": {"family": "ip", "name": TABLE}}}])


class IptablesBackend:
    """The fallback: chains ``CLAB-PREROUTING`` ... jumped to from the built-in chains."""

    name = "iptables"

    def _chain(self, hook: str) -> tuple[str, str, str]:
        table = _CHAINS[hook][2]
        return table, hook.upper(), CHAIN_PREFIX + hook.upper()

    def _ensure(self) -> None:
        for hook in _CHAINS:
            table, builtin, chain = self._chain(hook)
            _run(["iptables", "-w", "-t", table, "-N", chain], check=False)  # exists: fine
            if _run(
                ["iptables", "-w", "-t", table, "-C", builtin, "-j", chain], check=False
            ).returncode:
                _run(["iptables", "-w", "-t", table, "-I", builtin, "1", "-j", chain])

    def _saved(self) -> list[tuple[str, list[str]]]:
        out = []
        for table in ("nat", "filter"):
            res = _run(["iptables-save", "-t", table], check=False)
            for line in res.stdout.splitlines():
                if line.startswith(f"-A {CHAIN_PREFIX}"):
                    out.append((table, shlex.split(line)))
        return out

    @staticmethod
    def _comment(args: list[str]) -> str:
        return args[args.index("--comment") + 1] if "--comment" in args else ""

    def add(self, rules: Sequence[Rule]) -> None:
        self._ensure()
        added: list[list[str]] = []
        try:
            for r in rules:
                table, _, chain = self._chain(r.hook)
                argv = ["iptables", "-w", "-t", table, "-A", chain, *r.iptables]
                _run(argv)
                added.append(argv)
        except BaseException:
            for argv in reversed(added):  # all or nothing, as one nft batch would be
                _run([*argv[:4], "-D", *argv[5:]], check=False)
            raise

    def listed(self) -> list[tuple[str, str]]:
        return [(args[1], self._comment(args)) for _, args in self._saved()]

    def remove(self, owner: str) -> int:
        n = 0
        for table, args in self._saved():
            if self._comment(args).split(" ", 1)[0] == owner:
                _run(["iptables", "-w", "-t", table, "-D", *args[1:]])
                n += 1
        if not self._saved():
            self.remove_all()
        return n

    def remove_all(self) -> None:
        for hook in _CHAINS:
            table, builtin, chain = self._chain(hook)
            while (
                _run(
                    ["iptables", "-w", "-t", table, "-D", builtin, "-j", chain], check=False
                ).returncode
                == 0
            ):
                pass
            _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
            _run(["iptables", "-w", "-t", table, "-X", chain], check=False)


def backend(prefer: str | None = None) -> NftBackend | IptablesBackend:
    """nftables when ``nft`` is installed, else iptables (``prefer`` forces one, for tests;
    ``CONTAINERLAB_FIREWALL=iptables`` does the same from outside)."""
    prefer = prefer or os.environ.get("CONTAINERLAB_FIREWALL")
    if prefer == "iptables" or (prefer is None and not shutil.which("nft")):
        if not shutil.which("iptables"):
            raise NetworkError("neither nft nor iptables is installed; apt-get install nftables")
        return IptablesBackend()
    if not shutil.which("nft"):
        raise NetworkError("nft is not installed; apt-get install nftables")
    return NftBackend()


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One firewall change at a time on this host: list-then-delete must not interleave."""
    # /run, not the state root: the firewall is one per host, whatever root a process uses.
    fd = os.open("/run/clab-firewall.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_rules(rules: Sequence[Rule], prefer: str | None = None) -> None:
    """Install rules (all in one batch with nft)."""
    with _lock():
        backend(prefer).add(rules)


def remove(owner: str, prefer: str | None = None) -> int:
    """Remove every rule of ``owner`` (a container id or ``network:BRIDGE``); how many."""
    _check_owner(owner)
    with _lock():
        return backend(prefer).remove(owner)


def rules(prefer: str | None = None) -> list[tuple[str, str]]:
    """Every containerlab rule on the host, as (chain, "OWNER WHAT"), for ``system doctor``."""
    with _lock():
        return backend(prefer).listed()


def remove_all(prefer: str | None = None) -> None:
    """Drop every containerlab rule, table and chain (``system doctor --fix``)."""
    with _lock():
        backend(prefer).remove_all()


def publish(
    owner: str, mappings: Sequence[PortMapping], container_ip: str, prefer: str | None = None
) -> list[PortMapping]:
    """Publish ports of a container: check every host port first, then add all the rules.

    Returns the mappings with random host ports (``-p 80``) filled in. Nothing is changed
    if any port is taken, by a process (bind check) or by another container's rule.
    """
    _check_owner(owner)
    resolved = [
        m
        if m.host_port
        else PortMapping(m.host_ip, free_port(m.proto, m.host_ip), m.container_port, m.proto)
        for m in mappings
    ]
    with _lock():
        be = backend(prefer)
        published = [c for _, c in be.listed() if " publish " in c]
        for m in resolved:
            mine = m.host_ip or "*"
            for other in published:
                o_owner, _, target = other.split(" ", 2)
                o_ip, _, o_port = target.rpartition(":")
                # Same port and protocol clash when either side listens on every address.
                if o_port == f"{m.host_port}/{m.proto}" and (o_ip == mine or "*" in (o_ip, mine)):
                    raise NetworkError(
                        f"host port {m.host_port}/{m.proto} is already published by {o_owner};"
                        " publish on another port"
                    )
            check_port_free(m)
        be.add([r for m in resolved for r in publish_rules(owner, m, container_ip)])
    return resolved


@contextlib.contextmanager
def published(
    owner: str, mappings: Sequence[PortMapping], container_ip: str, prefer: str | None = None
) -> Iterator[list[PortMapping]]:
    """:func:`publish` for a ``with`` block; the owner's rules are removed at the end."""
    resolved = publish(owner, mappings, container_ip, prefer)
    try:
        yield resolved
    finally:
        remove(owner, prefer)


# --- forwarding -------------------------------------------------------------------------------
def _saved_forward() -> str:
    # One file for the host, not one per state root: ip_forward is the host's, and two roots
    # (the lab and a test run) each keeping "what it was" would restore it under each other.
    return "/run/containerlab-ip_forward.saved"


def enable_ip_forward() -> None:
    """Turn on IPv4 forwarding (masquerade and DNAT from other hosts route through the host).

    The value found is recorded (once, only if it was not 1 already) so that
    :func:`restore_ip_forward` can put it back when the last network needing it goes: a host
    that did not route before containerlab should not stay a router after it. If it was
    already 1 nothing is recorded, so we never turn off what another tool (Docker, libvirt)
    turned on.
    """
    saved = _saved_forward()
    old = set_sysctl("net/ipv4/ip_forward", "1")
    if old != "1" and not os.path.exists(saved):
        with open(saved, "w") as f:
            f.write(old)


def restore_ip_forward(prefer: str | None = None) -> None:
    """Put ``net.ipv4.ip_forward`` back as :func:`enable_ip_forward` found it, if it changed
    it and no network on the host needs it any more: the firewall is the host-wide truth (a
    masquerade rule is what a network that routes out has, whichever state root made it)."""
    saved = _saved_forward()
    if not os.path.exists(saved):
        return
    with contextlib.suppress(NetworkError):  # no firewall tool: no network can need it
        if any(comment.endswith(" masquerade") for _, comment in rules(prefer)):
            return
    with open(saved) as f:
        old = f.read().strip()
    set_sysctl("net/ipv4/ip_forward", old)
    os.unlink(saved)

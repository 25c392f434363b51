"""A picture of container networking on this host: bridges, veth pairs, containers, their
addresses and their published ports.

:func:`topology` reads what is there now, and changes nothing:

- the networks of this state root (``network.networks.ls()``) and who holds which address
  on each (``network.ipam.allocations``);
- the containers' records (``runtime.state.list_records()``) and, for each,
  ``runtime.networking.settings(rec)``: its addresses, MACs, host-side veths and ports;
- the kernel's own view, from sysfs: which interfaces are bridges (``/sys/class/net/X/
  bridge``), which ports each has (``/sys/class/net/X/brif/``), which bridge a veth is
  plugged into (``/sys/class/net/X/master``), and a bridge's IPv4 address (``SIOCGIFADDR``,
  the ioctl ``ifconfig`` reads it with).

:func:`picture` draws a :class:`Topology` as a matplotlib ``Figure``: the host's network
namespace on top with its bridges and published ports, each container below in a namespace
of its own, a line per veth pair. :func:`describe` writes the same as text.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

#: Where the kernel lists network interfaces.
SYS_NET = "/sys/class/net"

#: Fill colours of :func:`picture`.
COLORS = {
    "host": "#f1f3f5",  # the host's network namespace
    "bridge": "#8ecae6",  # a bridge of a containerlab network
    "bridge-other": "#cdb4db",  # a bridge made some other way (by hand)
    "container": "#95d5b2",  # a container with a network namespace of its own
    "shared": "#ffd166",  # a container that shares another's (or the host's) namespace
    "none": "#e9ecef",  # --network none: only lo
    "stub": "#ffffff",  # a bridge port that belongs to no container
    "port": "#f4a261",  # a published port, and its DNAT arrow
}
_VETH = "#1d3557"

# ioctls of <linux/sockios.h>: an interface's primary IPv4 address and its netmask.
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


# --- what is read -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """One published port: connections to ``host_ip:host_port`` go to the container's port."""

    host_ip: str  # "0.0.0.0": every address of the host
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class Endpoint:
    """A container's interface on one network: one veth pair, one end on each side."""

    network: str  # the network's name ("bridge" for the default one)
    bridge: str  # the host bridge the host end is plugged into
    ifname: str  # the container's end, inside its namespace ("eth0", "eth1"...)
    address: str  # its IPv4 address with the prefix, "172.30.0.2/16"
    mac: str  # the MAC address of the container's end
    veth: str  # the host's end of the pair ("clab" + 11 hex digits)
    plugged: bool  # the host end is a port of ``bridge`` right now (sysfs ``master``)


@dataclass(frozen=True)
class Container:
    """A container as the network sees it."""

    name: str
    short_id: str
    status: str  # running, exited...
    mode: str  # "bridge" (one or more networks), "none", "host" or "container:NAME"
    endpoints: tuple[Endpoint, ...]  # eth0 first
    published: tuple[Published, ...]


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge on the host: a virtual switch with the gateway address on it."""

    name: str  # "clab0", "clab-NAME"
    network: str | None  # the containerlab network it belongs to; None: made another way
    address: str  # its own IPv4 address with the prefix ("" when it has none or is gone)
    subnet: str  # the subnet behind it ("" when unknown)
    present: bool  # exists in the kernel now
    up: bool  # operstate "up": at least one port has a carrier
    ports: tuple[str, ...]  # the interfaces plugged into it, as sysfs lists them


@dataclass(frozen=True)
class Topology:
    """Bridges and containers as :func:`topology` found them; ``peers`` labels bridge ports
    that belong to no container (say, veths made by hand)."""

    bridges: tuple[Bridge, ...]
    containers: tuple[Container, ...]
    peers: Mapping[str, str]

    def bridge(self, name: str) -> Bridge:
        """The bridge called ``name``, or the bridge of the network called ``name``."""
        for b in self.bridges:
            if name in (b.name, b.network):
                return b
        raise KeyError(f"no bridge or network {name!r} in this topology")

    def container(self, name: str) -> Container:
        """The container called ``name`` (or with this short id)."""
        for c in self.containers:
            if name in (c.name, c.short_id):
                return c
        raise KeyError(f"no container {name!r} in this topology")

    def stray_ports(self, bridge: Bridge) -> list[str]:
        """The bridge's ports that are no container's veth (made by hand, or leftovers)."""
        ours = {e.veth for c in self.containers for e in c.endpoints}
        return [p for p in bridge.ports if p not in ours]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def is_bridge(name: str) -> bool:
    """Whether interface ``name`` is a bridge (sysfs gives bridges a ``bridge/`` directory)."""
    return os.path.isdir(f"{SYS_NET}/{name}/bridge")


def bridge_ports(name: str) -> tuple[str, ...]:
    """The interfaces plugged into bridge ``name``: the entries of ``/sys/class/net/NAME/brif``."""
    try:
        return tuple(sorted(os.listdir(f"{SYS_NET}/{name}/brif")))
    except OSError:
        return ()


def master(name: str) -> str | None:
    """The bridge interface ``name`` is plugged into (the ``master`` link in sysfs), or None."""
    try:
        return os.path.basename(os.readlink(f"{SYS_NET}/{name}/master"))
    except OSError:
        return None


def ipv4_address(name: str) -> str:
    """Interface ``name``'s primary IPv4 address with its prefix (``"172.30.0.1/16"``), or ""
    when it has none; read with the ioctls ``ifconfig`` uses (no netlink, no event loop)."""
    req = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
            mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, req)[20:24])
        except OSError:
            return ""
    return str(ipaddress.IPv4Interface(f"{addr}/{mask}"))


def read_bridge(name: str, network: str | None = None, subnet: str = "") -> Bridge:
    """What the kernel says about bridge ``name`` now (``present`` False if it is gone)."""
    present = is_bridge(name)
    address = ipv4_address(name) if present else ""
    if not subnet and address:
        subnet = str(ipaddress.IPv4Interface(address).network)
    return Bridge(
        name=name,
        network=network,
        address=address,
        subnet=subnet,
        present=present,
        up=_read(f"{SYS_NET}/{name}/operstate") == "up",
        ports=bridge_ports(name) if present else (),
    )


def _published(texts: Iterable[str]) -> tuple[Published, ...]:
    from containerlab.network import nat

    out = []
    for text in texts:
        m = nat.parse_publish(text)
        out.append(Published(m.host_ip or "0.0.0.0", m.host_port, m.container_port, m.proto))
    return tuple(out)


def _container(rec, names: Mapping[str, str]) -> Container:
    from containerlab.runtime import networking

    ns = networking.settings(rec)
    # The record's network part, as `run` recorded it (none for records older than networks).
    cfg = rec.config.get("network") or {"mode": "none"}
    mode = cfg.get("mode", "none")
    if mode == "container":
        other = cfg.get("container", "")
        mode = f"container:{names.get(other, other[:12])}"
    # settings() has no interface names: they are in the endpoints the start wrote down.
    live: dict = {}
    with contextlib.suppress(OSError, ValueError), open(rec.dir / "network.json") as f:
        live = json.load(f).get("endpoints", {})
    endpoints = []
    for net, ep in ns["Networks"].items():
        extra = live.get(net, {})
        veth = ep["EndpointID"]
        endpoints.append(
            Endpoint(
                network=net,
                bridge=extra.get("bridge", ""),
                ifname=extra.get("ifname", ""),
                address=f"{ep['IPAddress']}/{ep['IPPrefixLen']}",
                mac=ep["MacAddress"],
                veth=veth,
                plugged=bool(veth) and master(veth) == extra.get("bridge"),
            )
        )
    endpoints.sort(key=lambda e: (len(e.ifname), e.ifname))
    return Container(
        name=rec.name,
        short_id=rec.short_id,
        status=rec.state.status,
        mode=mode,
        endpoints=tuple(endpoints),
        published=_published(ns["Ports"]),
    )


def topology(
    *,
    all_containers: bool = False,
    extra_bridges: Sequence[str] = (),
    peers: Mapping[str, str] | None = None,
) -> Topology:
    """Read the networks, containers and bridges of this state root as they are now.

    Running containers only, unless ``all_containers`` (a stopped one has no interfaces).
    ``extra_bridges`` adds bridges that are no containerlab network's (one made by hand);
    ``peers`` labels bridge ports that belong to no container (``{"veth": "netns a"}``).
    """
    from containerlab.network import networks
    from containerlab.runtime import state

    records = state.list_records(all_states=all_containers)
    names = {r.id: r.name for r in state.list_records()}
    bridges = [read_bridge(n.bridge, n.name, n.subnet) for n in networks.ls()]
    # The default network first (as `docker network ls` lists bridge first), then by name.
    bridges.sort(key=lambda b: (b.network != networks.DEFAULT_NETWORK, b.network or ""))
    seen = {b.name for b in bridges}
    bridges += [read_bridge(name) for name in extra_bridges if name not in seen]
    containers = [_container(r, names) for r in reversed(records)]  # oldest first
    return Topology(tuple(bridges), tuple(containers), dict(peers or {}))


# --- as text ----------------------------------------------------------------------------------
def describe(topo: Topology, *, macs: bool = False) -> str:
    """The topology as text, one bridge per paragraph and one line per endpoint; the
    containers without an interface of their own at the end. MACs only with ``macs``."""
    lines = []
    for b in topo.bridges:
        what = f"network {b.network!r}" if b.network else "not a containerlab network"
        state = ("up" if b.up else "down") if b.present else "missing"
        lines.append(
            f"bridge {b.name} ({what}) {b.address or b.subnet or 'no address'}, {state},"
            f" {len(b.ports)} port(s)"
        )
        for c in topo.containers:
            for e in c.endpoints:
                if e.bridge != b.name:
                    continue
                mac = f" mac {e.mac}" if macs else ""
                plugged = "" if e.plugged else " (NOT plugged in)"
                lines.append(f"  {e.veth} <-> {c.name}:{e.ifname} {e.address}{mac}{plugged}")
        for p in topo.stray_ports(b):
            lines.append(f"  {p} <-> {topo.peers.get(p, '(not a container of this state root)')}")
    published = [(c, p) for c in topo.containers for p in c.published]
    if published:
        lines.append("published ports (DNAT on the host)")
        for c, p in published:
            target = c.endpoints[0].address.split("/")[0] if c.endpoints else "?"
            lines.append(
                f"  {p.host_ip}:{p.host_port}/{p.proto} -> {c.name} {target}:{p.container_port}"
            )
    others = [c for c in topo.containers if c.mode != "bridge" or not c.endpoints]
    if others:
        lines.append("no veth of their own")
        for c in others:
            lines.append(f"  {c.name}: --network {c.mode} ({_mode_meaning(c.mode)})")
    return "\n".join(lines)


def _mode_meaning(mode: str) -> str:
    if mode == "none":
        return "only lo"
    if mode == "host":
        return "the host's interfaces"
    if mode.startswith("container:"):
        return f"{mode.partition(':')[2]}'s interfaces"
    return "not plugged in"


# --- as a picture -----------------------------------------------------------------------------
def _box(ax, x, y, w, h, color, gid, *, dashed=False, lw=1.0):
    box = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        boxstyle="round,pad=0.02,rounding_size=0.08",
        facecolor=color,
        edgecolor="#333333",
        linewidth=lw,
        linestyle="--" if dashed else "-",
    )
    box.set_gid(gid)
    ax.add_patch(box)
    return box


def _line(ax, start, end, gid, *, color=_VETH, style="-", arrow=False, rad=0.0, lw=1.6):
    patch = FancyArrowPatch(
        start,
        end,
        arrowstyle="-|>" if arrow else "-",
        mutation_scale=12,
        connectionstyle=f"arc3,rad={rad}",
        color=color,
        linestyle=style,
        linewidth=lw,
    )
    patch.set_gid(gid)
    ax.add_patch(patch)
    return patch


@dataclass
class _Slot:
    """One column of the picture: a container (with those sharing its namespace stacked
    below it) or a bridge port that is no container's."""

    stack: list[Container]
    stub: str | None = None


def _groups(topo: Topology) -> list[tuple[Bridge | None, list[_Slot]]]:
    """Each bridge with its slots (the containers whose eth0 is on it, and its stray ports),
    then a group of the containers with no interface of their own (``--network none``)."""
    by_name = {c.name: c for c in topo.containers}
    groups: list[tuple[Bridge | None, list[_Slot]]] = [(b, []) for b in topo.bridges]
    where = {b.name: i for i, b in enumerate(topo.bridges)}
    slot_of: dict[str, _Slot] = {}
    rest: list[_Slot] = []
    for c in topo.containers:
        if c.mode == "host" or c.mode.startswith("container:"):
            continue
        slot = _Slot([c])
        slot_of[c.name] = slot
        if c.endpoints and c.endpoints[0].bridge in where:
            groups[where[c.endpoints[0].bridge]][1].append(slot)
        else:
            rest.append(slot)
    for c in topo.containers:
        if c.mode.startswith("container:"):
            target = by_name.get(c.mode.partition(":")[2])
            if target is not None and target.name in slot_of:
                slot_of[target.name].stack.append(c)
            else:
                rest.append(_Slot([c]))
    for b, slots in groups:
        if b is not None:
            slots += [_Slot([], stub=p) for p in topo.stray_ports(b)]
    if rest:
        groups.append((None, rest))
    return groups


def picture(topo: Topology, *, title: str | None = None, macs: bool = True) -> Figure:
    """Draw the topology: the host's network namespace as a band on top holding the bridges,
    the published ports and the containers run with ``--network host``; below it each
    container in a namespace of its own, under the bridge its ``eth0`` is plugged into, and
    those that share its namespace (``--network container:NAME``) stacked under it; a line
    per veth pair (host end's name and ``ethN`` beside it; dotted if the host end is not
    on the bridge); a dashed orange arrow per published port (DNAT, through the bridge).

    Every element carries a ``gid``: ``host``, ``bridge:NAME``, ``container:NAME``,
    ``veth:HOST_END``, ``port:HOST_PORT/PROTO`` (and its arrow ``dnat:...``), ``stub:PORT``
    (a bridge port that is no container's) and ``shares:NAME``. The figure is detached from
    pyplot: show it as a cell's value.
    """
    groups = _groups(topo)
    host_mode = [c for c in topo.containers if c.mode == "host"]
    slot_w, box_w, row_h, gap = 3.1, 2.8, 1.25, 0.35
    # x of every slot, group after group with a gap between groups.
    xs: list[list[float]] = []
    x = 0.0
    for _, slots in groups:
        n = max(1, len(slots))
        xs.append([x + slot_w * (i + 0.5) for i in range(n)])
        x += slot_w * n + gap
    width = max(x - gap, slot_w * 2)
    depth = max([len(s.stack) for _, slots in groups for s in slots] + [1])
    host_top, host_bottom, bridge_y = 2.3, 0.0, 0.5
    top_row = -1.1  # the centre of the first row of containers
    bottom = top_row - row_h * (depth - 0.5)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.95 * width + 0.8), 0.9 * (host_top - bottom) + 1.2))
    ax.set_xlim(-0.15, width + 0.15)
    ax.set_ylim(bottom - 0.15, host_top + 0.3)
    ax.set_aspect("equal")
    ax.axis("off")

    _box(
        ax,
        width / 2,
        (host_top + host_bottom) / 2,
        width,
        host_top - host_bottom,
        COLORS["host"],
        "host",
    )
    ax.text(
        0.12, host_top - 0.22, "host network namespace", fontsize=9, style="italic", va="center"
    )
    for i, c in enumerate(host_mode):
        hx = width - 0.1 - 2.3 * (i + 0.5)
        _box(ax, hx, host_top - 0.3, 2.2, 0.36, COLORS["shared"], f"container:{c.name}")
        ax.text(
            hx, host_top - 0.3, f"{c.name} (--network host)", ha="center", va="center", fontsize=7
        )

    centers: dict[str, tuple[float, float]] = {}
    bridge_span: dict[str, tuple[float, float]] = {}
    h = row_h * 0.6  # a container box's height
    for (b, slots), sx in zip(groups, xs, strict=True):
        left, right = sx[0] - box_w / 2, sx[-1] + box_w / 2
        if b is not None:
            bridge_span[b.name] = (left, right)
            color = COLORS["bridge"] if b.network else COLORS["bridge-other"]
            _box(
                ax,
                (left + right) / 2,
                bridge_y,
                right - left,
                0.62,
                color,
                f"bridge:{b.name}",
                dashed=not b.present,
                lw=1.4,
            )
            what = f"network {b.network}" if b.network else "made by hand"
            ax.text(
                (left + right) / 2,
                bridge_y + 0.13,
                f"bridge {b.name}",
                ha="center",
                va="center",
                fontsize=9,
                weight="bold",
            )
            ax.text(
                (left + right) / 2,
                bridge_y - 0.14,
                f"{what} · {b.address or b.subnet or 'no address'}",
                ha="center",
                va="center",
                fontsize=7,
            )
        else:
            ax.text(
                (left + right) / 2,
                top_row + h / 2 + 0.2,
                "no interface of their own",
                ha="center",
                va="bottom",
                fontsize=8,
                style="italic",
            )
        for slot, cx in zip(slots, sx, strict=False):
            if slot.stub is not None:
                _box(
                    ax,
                    cx,
                    top_row,
                    box_w * 0.8,
                    h * 0.7,
                    COLORS["stub"],
                    f"stub:{slot.stub}",
                    dashed=True,
                )
                ax.text(
                    cx,
                    top_row,
                    topo.peers.get(slot.stub, "(no container)"),
                    ha="center",
                    va="center",
                    fontsize=7,
                )
                _line(ax, (cx, bridge_y - 0.31), (cx, top_row + h * 0.35), f"veth:{slot.stub}")
                ax.text(
                    cx + 0.07,
                    (bridge_y - 0.31 + top_row + h * 0.35) / 2,
                    slot.stub,
                    fontsize=6.5,
                    family="monospace",
                    color=_VETH,
                    va="center",
                )
            for r, c in enumerate(slot.stack):
                cy = top_row - row_h * r
                centers[c.name] = (cx, cy)
                shared = c.mode.startswith("container:")
                color = (
                    COLORS["shared"]
                    if shared
                    else COLORS["container"]
                    if c.endpoints
                    else COLORS["none"]
                )
                _box(ax, cx, cy, box_w, h, color, f"container:{c.name}")
                ax.text(
                    cx,
                    cy + 0.2,
                    f"{c.name}  ({c.short_id})",
                    ha="center",
                    va="center",
                    fontsize=8,
                    weight="bold",
                )
                if c.endpoints:
                    detail = [f"{e.ifname} {e.address}" for e in c.endpoints]
                    if macs:
                        detail.append(f"{c.endpoints[0].ifname} mac {c.endpoints[0].mac}")
                elif shared:
                    detail = [f"--network {c.mode}", "(its interfaces)"]
                else:
                    detail = [
                        f"--network {c.mode}: lo only" if c.mode == "none" else "not plugged in"
                    ]
                ax.text(
                    cx,
                    cy - 0.13,
                    "\n".join(detail),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    family="monospace",
                )
                if shared:
                    above = cy + row_h
                    _line(
                        ax,
                        (cx - box_w / 2 + 0.15, above - h / 2),
                        (cx - box_w / 2 + 0.15, cy + h / 2),
                        f"shares:{c.name}",
                        color="#6c757d",
                        style="--",
                    )
                    ax.text(
                        cx - box_w / 2 + 0.25,
                        cy + row_h / 2,
                        "same netns",
                        fontsize=6.5,
                        color="#6c757d",
                        va="center",
                    )

    # veth pairs: the bridge (host end) to the container (ethN).
    for c in topo.containers:
        if c.name not in centers or c.mode != "bridge":
            continue
        cx, cy = centers[c.name]
        for j, e in enumerate(c.endpoints):
            if e.bridge not in bridge_span:
                continue
            left, right = bridge_span[e.bridge]
            style = "-" if e.plugged else ":"
            if left <= cx <= right:  # under its own bridge: straight up
                x0 = cx - 0.4 * j
                _line(ax, (x0, bridge_y - 0.31), (x0, cy + h / 2), f"veth:{e.veth}", style=style)
                # Left of the line: a published port's arrow runs on its right.
                lx, ly, ha = x0 - 0.07, (bridge_y - 0.31 + cy + h / 2) / 2, "right"
            else:  # another network's bridge: a curve from its nearest end
                toward = 1 if cx > right else -1
                bx = right - 0.3 if toward > 0 else left + 0.3
                end = (cx - toward * 0.9, cy + h / 2)
                _line(
                    ax, (bx, bridge_y - 0.31), end, f"veth:{e.veth}", style=style, rad=0.25 * toward
                )
                lx, ly, ha = end[0] - toward * 0.07, end[1] + 0.2, "right" if toward > 0 else "left"
            ax.text(
                lx,
                ly,
                f"{e.veth} ↔ {e.ifname}",
                fontsize=6.5,
                family="monospace",
                color=_VETH,
                va="center",
                ha=ha,
            )

    # published ports: a tag at the host's top edge, a dashed arrow through the bridge.
    for c in topo.containers:
        if c.name not in centers:
            continue
        cx, cy = centers[c.name]
        for k, p in enumerate(c.published):
            tx, ty = cx + 0.35 - 0.5 * k, host_top - 0.75 - 0.42 * k
            tag = f"{p.host_ip}:{p.host_port}/{p.proto}"
            _box(ax, tx - 0.95, ty, 1.9, 0.32, COLORS["port"], f"port:{p.host_port}/{p.proto}")
            ax.text(tx - 0.95, ty, tag, ha="center", va="center", fontsize=7, family="monospace")
            target = c.endpoints[0].address.split("/")[0] if c.endpoints else "?"
            _line(
                ax,
                (tx + 0.02, ty),
                (tx + 0.02, cy + h / 2),
                f"dnat:{p.host_port}/{p.proto}",
                color=COLORS["port"],
                style="--",
                arrow=True,
                lw=1.3,
            )
            ax.text(
                tx + 0.1,
                ty,
                f"DNAT to {target}:{p.container_port}",
                fontsize=6.5,
                va="center",
                color="#9c4a1a",
            )

    # The legend names only what is drawn.
    shown = [
        ("bridge", "bridge of a network", any(b.network for b in topo.bridges)),
        ("bridge-other", "bridge made by hand", any(b.network is None for b in topo.bridges)),
        ("container", "container (own netns)", any(c.endpoints for c in topo.containers)),
        (
            "shared",
            "shares a netns",
            any(c.mode != "bridge" and c.mode != "none" for c in topo.containers),
        ),
        (
            "none",
            "no interface but lo",
            any(c.mode in ("none", "bridge") and not c.endpoints for c in topo.containers),
        ),
        ("port", "published port", any(c.published for c in topo.containers)),
    ]
    legend = [
        Patch(facecolor=COLORS[key], edgecolor="#333333", label=label)
        for key, label, drawn in shown
        if drawn
    ]
    if legend:
        fig.legend(handles=legend, loc="lower center", ncol=len(legend), frameon=False, fontsize=8)
    ax.set_title(
        title
        or f"network topology: {len(topo.bridges)} bridge(s), {len(topo.containers)} container(s)",
        fontsize=11,
    )
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig


def gids(fig: Figure) -> set[str]:
    """Every ``gid`` drawn in a :func:`picture` (for tests and self-checks)."""
    return {p.get_gid() for p in fig.axes[0].patches if p.get_gid()}

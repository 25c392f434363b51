"""``system doctor``: compare what the records say with what the machine has, and mend it.

A CLI or a supervisor can be killed at any instant (SIGKILL, a reboot). Because every
resource a container holds is recorded before it is created, what such a death leaves can
always be found from the records and the kernel's own tables, and removed:

- a record that says "running" although nothing runs (fixed by ``state.refresh``);
- a container directory without a complete record (killed during ``create``);
- a name, or an image hold, that points at no container;
- a process of containerlab (a supervisor, or a process whose root is a container's
  overlay: PID 1, the command under ``--init``, what they started) whose container is
  gone or exited (a detached container keeps no launcher: its supervisor waits for PID 1);
- a host mount inside containerlab's state directory;
- temporary files of a pull or unpack that died;
- a network's bridge, firewall rules and address pool left without its record, and the
  firewall rules, veth and address of a container that no longer exists (see
  :func:`_network_findings` for how they are proved to be this state root's).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

from containerlab import paths, rootfs, syscalls
from containerlab.errors import ContainerlabError
from containerlab.image.store import Store
from containerlab.runtime import container, networking, state


@dataclass(frozen=True)
class Finding:
    """One leftover: what it is, and why it is one."""

    kind: str  # "record", "dir", "name", "hold", "process", "mount", "temp", "cgroup",
    # and for networks "rule", "link", "pool", "address"
    what: str  # the path, pid or name
    why: str


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _root_container(pid: str, containers: str) -> str | None:
    """The container whose overlay is this process's ``/``, if any (from its mountinfo)."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/" and " - overlay " in line and f"{containers}/" in line:
                    upper = line.split("upperdir=", 1)[1].split(",", 1)[0]
                    return upper.removeprefix(containers + "/").split("/", 1)[0]
    except (OSError, IndexError):
        pass
    return None


def _state_root_of(pid: str) -> str:
    """The state root a containerlab process works on (its ``CONTAINERLAB_ROOT``)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"CONTAINERLAB_ROOT=") and item[18:]:
                    return item[18:].decode(errors="replace")
    except OSError:
        return ""
    return paths.DEFAULT_ROOT


def _supervisors() -> dict[str, list[str]]:
    """Every live supervisor process of this state root, by the container id it serves.

    Supervisors of other state roots (another user's lab, another test) are not ours to
    judge: their containers are not in our records.
    """
    out: dict[str, list[str]] = {}
    ours = str(paths.state_root())
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        cmd = _cmdline(pid)
        if (
            "containerlab.runtime.supervisor" in cmd
            and state.process_start(int(pid))
            and _state_root_of(pid) == ours
        ):
            rest = cmd.split("containerlab.runtime.supervisor", 1)[1].split()
            if rest:
                out.setdefault(rest[0], []).append(pid)
    return out


def _complete(cid: str) -> bool:
    """A record exists for ``cid``, or is being written right now (its lock is held).

    The lock is tested first: a create holds it until ``config.json`` exists, so "not busy,
    then no config.json" cannot be a create that finished between the two looks.
    """
    return state.busy(cid) or (state.container_dir(cid) / "config.json").exists()


def _abandoned(rec: state.Record, supervisors: dict[str, list[str]]) -> str:
    """Why a record that exists is nevertheless a leftover ("" if it is not)."""
    st = rec.state
    if st.status == "removing":
        return "its removal was interrupted"
    if not rec.config.get("auto_remove") or rec.running or rec.id in supervisors:
        return ""
    if state.alive(st.supervisor_pid, st.supervisor_start):
        return ""  # its supervisor is about to remove it
    if st.status == "created" and state.alive(
        int(rec.config.get("creator_pid", 0)), int(rec.config.get("creator_start", 0))
    ):
        return ""  # `run --rm` is about to start it
    return "a --rm container whose supervisor died before removing it"


def examine() -> list[Finding]:
    findings: list[Finding] = []
    root = state.root()
    known = set(state.all_ids())
    supervisors = _supervisors()
    running = set()
    for cid in known:
        try:
            before = state.load(cid)
            after = state.refresh(before)
        except state.NoSuchContainerError:
            continue
        why = _abandoned(after, supervisors)
        if why:
            findings.append(Finding("record", cid[:12], why + " (removed by --fix)"))
        elif before.state.status != after.state.status:
            findings.append(
                Finding(
                    "record",
                    cid[:12],
                    "said running, but its processes and "
                    "supervisor are gone (now recorded as exited)",
                )
            )
        if after.running:
            running.add(cid)
        elif not state.busy(cid):
            # A cgroup outlives its container only if the supervisor died before `finish`.
            from containerlab.runtime.container import open_cgroup

            cg = open_cgroup(after.config)
            if cg is not None:
                findings.append(
                    Finding(
                        "cgroup",
                        after.config["cgroup"]["name"],
                        f"the cgroup of container {cid[:12]}, which is not running",
                    )
                )
            held = networking.held(after)
            if held:
                findings.append(
                    Finding(
                        "endpoint",
                        cid[:12],
                        f"container {cid[:12]} is not running but holds {held} (its supervisor"
                        " died before giving them back)",
                    )
                )
    if root.is_dir():
        for d in root.iterdir():
            if d.name not in known and not _complete(d.name):
                findings.append(
                    Finding(
                        "dir",
                        str(d),
                        "a container directory with no complete record (creation or "
                        "removal was interrupted)",
                    )
                )
    if state.names_dir().is_dir():
        for link in state.names_dir().iterdir():
            with contextlib.suppress(OSError):
                if not _complete(os.readlink(link)):
                    findings.append(Finding("name", link.name, "names no container"))
    store = Store()
    for holder in store.holders():
        if not _complete(holder):
            findings.append(
                Finding("hold", holder[:12], "holds an image for a container that no longer exists")
            )
    containers = str(root)
    strays = {pid: cid for cid, pids in supervisors.items() for pid in pids}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if pid not in strays:
            owner = _root_container(pid, containers)
            if owner is not None:
                strays[pid] = owner
    orphan_cgroups = set()
    for pid, owner in sorted(strays.items(), key=lambda item: int(item[0])):
        if owner not in running and not state.busy(owner):
            if owner not in known:  # its record is gone: nothing else names its cgroup
                orphan_cgroups.add(f"clab-{owner[:12]}")
            findings.append(
                Finding("process", pid, f"belongs to container {owner[:12]}, which is not running")
            )
    state_root = str(paths.state_root())
    for m in rootfs.mountinfo():
        if m.mountpoint.startswith(state_root + "/"):
            findings.append(
                Finding(
                    "mount",
                    m.mountpoint,
                    "a host mount inside containerlab's "
                    "state directory (containers mount inside their own "
                    "namespace)",
                )
            )
    if store._pending_since() is None:
        for d in (store.tmp, store.layers_dir):
            if d.is_dir():
                for p in d.iterdir():
                    if d == store.tmp or p.name.startswith(".unpack-"):
                        findings.append(
                            Finding("temp", str(p), "left by a pull, load or unpack that died")
                        )
    from containerlab import cgroups

    for name in sorted(orphan_cgroups):
        with contextlib.suppress(ContainerlabError):
            cgroups.Cgroup.open(name)
            findings.append(
                Finding("cgroup", name, "the cgroup of a stray container (its record is gone)")
            )
    findings += _network_findings()
    return findings


def repair(findings: list[Finding]) -> list[str]:
    """Remove every leftover found; returns what was done, one line each."""
    done = []
    store = Store()
    # Processes first (they hold the rest), then mounts (a directory with a mount point
    # inside cannot be removed), then the rest.
    # Network leftovers: rules and links before the pool or address that proves them ours,
    # so that a repair that fails halfway is still found (and proved) by the next doctor.
    order = {"process": 0, "mount": 1, "rule": 3, "link": 4, "pool": 5, "address": 5}
    still = (
        {(f.kind, f.what) for f in _network_findings()}
        if any(f.kind in _NETWORK_KINDS for f in findings)
        else set()
    )
    for f in sorted(findings, key=lambda f: order.get(f.kind, 2)):
        with contextlib.suppress(OSError):
            if f.kind == "process":
                os.kill(int(f.what), signal.SIGKILL)
                done.append(f"killed process {f.what}")
            elif f.kind == "cgroup":
                from containerlab import cgroups

                with contextlib.suppress(ContainerlabError):
                    cgroups.Cgroup.open(f.what).remove()
                    done.append(f"removed cgroup {f.what}")
            elif f.kind == "mount":
                syscalls.umount2(f.what, syscalls.MNT_DETACH)
                done.append(f"unmounted {f.what}")
            elif f.kind in ("dir", "temp"):
                shutil.rmtree(f.what, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.what)
                done.append(f"removed {f.what}")
            elif f.kind == "name":
                link = state.names_dir() / f.what
                if not _complete(os.readlink(link)):  # not taken again meanwhile
                    os.unlink(link)
                done.append(f"removed name {f.what}")
            elif f.kind == "hold":
                for holder in store.holders():
                    if holder.startswith(f.what) and not _complete(holder):
                        store.release(holder)
                done.append(f"released image hold of {f.what}")
            elif f.kind in _NETWORK_KINDS:
                if (f.kind, f.what) in still:  # not taken up again meanwhile
                    done.append(_repair_network(f))
            elif f.kind == "endpoint":
                try:
                    rec = state.load(state.resolve(f.what))
                except state.ContainerError:
                    continue  # removed meanwhile (a --rm record above): it unplugged then
                if not state.refresh(rec).running and not state.busy(rec.id):
                    networking.unplug(rec)
                    done.append(f"released the addresses and ports of {f.what}")
            elif f.kind == "record":
                try:
                    rec = state.load(state.resolve(f.what))
                except state.ContainerError:
                    continue
                if _abandoned(rec, _supervisors()):
                    container.remove_record(rec.id)
                    done.append(f"removed container {f.what}")
                else:
                    done.append(f"recorded {f.what} as exited")
    return done


# --- networks ---------------------------------------------------------------------------------
_NETWORK_KINDS = ("rule", "link", "pool", "address")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def _ip_json(*argv: str) -> list[dict]:
    """``ip -j ...`` parsed; [] when the device is gone (or ip fails)."""
    res = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    return json.loads(res.stdout)


def _bridge_addresses(name: str) -> set[str] | None:
    """The IPv4 addresses ("10.0.0.1/24") of bridge ``name``; None if it is not a bridge."""
    links = _ip_json("-d", "addr", "show", "dev", name)
    if not links or links[0].get("linkinfo", {}).get("info_kind") != "bridge":
        return None
    return {
        f"{a['local']}/{a['prefixlen']}"
        for a in links[0].get("addr_info", [])
        if a["family"] == "inet"
    }


def _network_findings() -> list[Finding]:
    """Network leftovers that provably belong to this state root.

    The firewall and the links are one per host, shared by every state root (another
    user's lab, another test), and a rule or a bridge does not say which root made it. So
    only what this root's records prove ours is listed:

    - an address pool (``network/ipam/NAME.json``) with no network record is a network of
      this root whose create or rm was cut short (or whose record was deleted): its rules
      (``network:BRIDGE``) are ours, and its bridge too if that carries only the pool's
      gateway address (a bridge of the same name with other addresses is another root's);
    - an allocation in one of this root's pools whose owner is a container id with no
      container record here is an endpoint of a container of this root that is gone: the
      rules it owns, its veth (named from its id and the network) and the address are ours.

    A ``clab`` link or rule that nothing here names (another root's, or one whose pool was
    deleted too) is left alone: removing it could break somebody else's network.
    """
    from containerlab.errors import NetworkError
    from containerlab.network import ipam, links, nat, networks

    try:
        rules = nat.rules()
    except NetworkError:  # neither nft nor iptables: no rules to look at
        rules = []
    by_owner: dict[str, list[str]] = {}
    for chain, comment in rules:
        by_owner.setdefault(comment.split(" ", 1)[0], []).append(f"{chain}: {comment}")
    present = set(links.clab_links())
    recorded = {n.name for n in networks.ls()}
    pools = (
        sorted(p.stem for p in ipam.ipam_dir().glob("*.json")) if ipam.ipam_dir().is_dir() else []
    )
    findings: list[Finding] = []
    for name in pools:
        allocations = ipam.allocations(name)
        gone = {
            owner
            for owner in allocations
            if _CONTAINER_ID.fullmatch(owner) and not _complete(owner)
        }
        for owner in sorted(gone):
            if owner in by_owner:
                findings.append(
                    Finding(
                        "rule",
                        owner,
                        f"{len(by_owner[owner])} firewall rule(s) of container {owner[:12]}, "
                        f"which has no record here (its address on network {name!r} proves "
                        f"it was this state root's): {'; '.join(by_owner[owner])}",
                    )
                )
            veth = links.veth_name(owner, name)
            if veth in present:
                findings.append(
                    Finding(
                        "link",
                        veth,
                        f"the veth of container {owner[:12]} on network {name!r} (its name is "
                        "derived from both); the container has no record here",
                    )
                )
            findings.append(
                Finding(
                    "address",
                    f"{name}/{owner[:12]}",
                    f"address {allocations[owner]} of network {name!r} held by container "
                    f"{owner[:12]}, which has no record here",
                )
            )
        if name in recorded:
            continue
        if set(allocations) - gone:
            continue  # endpoints of live containers (or a notebook's) still use it: keep it
        try:
            with open(ipam.ipam_dir() / f"{name}.json") as f:
                pool = json.load(f)
        except (OSError, ValueError):
            continue
        prefix = pool["subnet"].split("/")[1]
        gateway = f"{pool['gateway']}/{prefix}"
        bridge = networks.bridge_of(name)
        addresses = _bridge_addresses(bridge) if bridge in present else set()
        if addresses is None or addresses - {gateway}:
            continue  # a link of that name that is not the bridge this pool made: not ours
        owner = f"network:{bridge}"  # as networks.Network.owner
        if owner in by_owner:
            findings.append(
                Finding(
                    "rule",
                    owner,
                    f"{len(by_owner[owner])} firewall rule(s) of network {name!r}, which has "
                    f"no record (its address pool is still in this state root): "
                    f"{'; '.join(by_owner[owner])}",
                )
            )
        if bridge in present:
            findings.append(
                Finding(
                    "link",
                    bridge,
                    f"the bridge of network {name!r}, which has no record; it carries only "
                    f"the gateway {gateway} of the address pool left in this state root",
                )
            )
        findings.append(
            Finding(
                "pool",
                name,
                f"the address pool of network {name!r} ({pool['subnet']}), which has no record "
                "(its create or rm was interrupted, or the record was deleted)",
            )
        )
    return findings


def _repair_network(f: Finding) -> str:
    """Remove one network leftover found (and still found) by :func:`_network_findings`."""
    from containerlab.network import ipam, links, nat

    if f.kind == "rule":
        n = nat.remove(f.what)
        return f"removed {n} firewall rule(s) of {f.what}"
    if f.kind == "link":
        links.delete_link(f.what)
        return f"removed link {f.what}"
    if f.kind == "pool":
        ipam.delete_pool(f.what)
        nat.restore_ip_forward()  # as `network rm` does: if no network on the host needs it
        return f"removed the address pool of network {f.what}"
    name, _, prefix = f.what.partition("/")
    for owner in ipam.allocations(name):
        if owner.startswith(prefix) and not _complete(owner):
            ipam.release(name, owner)
    return f"released address of {prefix} on network {name}"

"""``system doctor``: compare what the records say with what the machine has, and mend it.

A CLI or a supervisor can be killed at any instant (SIGKILL, a reboot). Because every
resource a container holds is recorded before it is created, what such a death leaves can
always be found from the records and the kernel's own tables, and removed:

- a record that says "running" although nothing runs (fixed by ``state.refresh``);
- a container directory without a complete record (killed during ``create``);
- a name, or an image hold, that points at no container;
- a process of containerlab (a supervisor, a launcher, or a process whose root is a
  container's overlay) whose container is gone or exited;
- a host mount inside containerlab's state directory;
- temporary files of a pull or unpack that died.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass

from containerlab import paths, rootfs, syscalls
from containerlab.image.store import Store
from containerlab.runtime import state


@dataclass(frozen=True)
class Finding:
    """One leftover: what it is, and why it is one."""

    kind: str  # "record", "dir", "name", "hold", "process", "mount", "temp"
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


def examine() -> list[Finding]:
    findings: list[Finding] = []
    root = state.root()
    known = set(state.all_ids())
    running = set()
    for cid in known:
        try:
            before = state.load(cid)
            after = state.refresh(before)
        except state.NoSuchContainerError:
            continue
        if before.state.status != after.state.status:
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
    if root.is_dir():
        for d in root.iterdir():
            if d.name not in known:
                findings.append(
                    Finding(
                        "dir",
                        str(d),
                        "a container directory with no complete record (creation was interrupted)",
                    )
                )
    if state.names_dir().is_dir():
        for link in state.names_dir().iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(link) not in known:
                    findings.append(Finding("name", link.name, "names no container"))
    store = Store()
    for holder in store.holders():
        if holder not in known:
            findings.append(
                Finding("hold", holder[:12], "holds an image for a container that no longer exists")
            )
    containers = str(root)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        cmd = _cmdline(pid)
        owner = None
        if "containerlab.runtime.supervisor" in cmd:
            owner = cmd.split("containerlab.runtime.supervisor", 1)[1].split()[0]
        else:
            owner = _root_container(pid, containers)
        if owner is not None and owner not in running:
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
    return findings


def repair(findings: list[Finding]) -> list[str]:
    """Remove every leftover found; returns what was done, one line each."""
    done = []
    store = Store()
    for f in sorted(findings, key=lambda f: f.kind != "process"):  # processes first
        with contextlib.suppress(OSError):
            if f.kind == "process":
                os.kill(int(f.what), signal.SIGKILL)
                done.append(f"killed process {f.what}")
            elif f.kind == "mount":
                syscalls.umount2(f.what, syscalls.MNT_DETACH)
                done.append(f"unmounted {f.what}")
            elif f.kind in ("dir", "temp"):
                shutil.rmtree(f.what, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.what)
                done.append(f"removed {f.what}")
            elif f.kind == "name":
                os.unlink(state.names_dir() / f.what)
                done.append(f"removed name {f.what}")
            elif f.kind == "hold":
                for holder in store.holders():
                    if holder.startswith(f.what):
                        store.release(holder)
                done.append(f"released image hold of {f.what}")
            elif f.kind == "record":
                done.append(f"recorded {f.what} as exited")
    return done

"""The container's init steps: run inside the new namespaces, right before the command.

``containerlab.nsexec`` (the re-executed launcher, like ``runc init``) calls :func:`setup`
in the process that becomes the container's PID 1, after it entered its namespaces and
before it execs the command. Everything here happens inside the container's private mount
namespace, so when the last process of the container exits, every mount made here vanishes
with the namespace: nothing to unmount on the host.
"""

from __future__ import annotations

import os

from containerlab import rootfs, syscalls

# Imported here, not where it is used: after pivot_root the host's files, this package
# included, are out of reach.
from containerlab.runtime import user


def _overlay_options(lower: list[str], upper: str, work: str) -> str:
    # overlayfs lists lower dirs top-most first; ':' and ',' in a path must be escaped.
    def esc(p: str) -> str:
        return p.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")

    return f"lowerdir={':'.join(esc(p) for p in lower)},upperdir={esc(upper)},workdir={esc(work)}"


def setup(payload: dict) -> dict[str, str]:
    """Mount the container's root, pivot into it, become its user (payload from the runtime).

    Returns environment defaults learned inside (the user's HOME).
    """
    rootfs.make_private("/")
    target = payload["target"]
    # The image's layers read-only below (top-most first, as overlayfs wants them), a fresh
    # writable directory on top: the container changes anything without touching the image.
    syscalls.mount(
        "overlay",
        target,
        "overlay",
        0,
        _overlay_options(payload["lower"], payload["upper"], payload["work"]),
    )
    if payload["new_net"]:
        syscalls.set_link_up("lo")  # a new network namespace starts with lo down
    rootfs.setup_root(target, new_net=payload["new_net"], masks=payload["masks"])
    workdir = payload["workdir"]
    os.makedirs(workdir, exist_ok=True)  # Docker creates a missing working directory
    os.chdir(workdir)
    if payload.get("user"):
        return user.switch(payload["user"])
    return {"HOME": user.resolve("0")[3]}  # root stays root; HOME from the image's passwd

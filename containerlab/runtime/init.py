"""The container's init steps: run inside the new namespaces, right before the command.

``containerlab.nsexec`` (the re-executed launcher, like ``runc init``) calls :func:`setup`
in the process that becomes the container's PID 1, after it entered its namespaces and
before it execs the command. Everything here happens inside the container's private mount
namespace, so when the last process of the container exits, every mount made here vanishes
with the namespace: nothing to unmount on the host.
"""

from __future__ import annotations

import array  # noqa: F401  (socket.send_fds needs it; imported while the host is in reach)
import os
import socket

from containerlab import rootfs, syscalls
from containerlab.errors import ContainerError

# Imported here, not where it is used: after pivot_root the host's files, this package
# included, are out of reach.
from containerlab.runtime import user


def _overlay_options(lower: list[str], upper: str, work: str) -> str:
    # overlayfs lists lower dirs top-most first; ':' and ',' in a path must be escaped.
    def esc(p: str) -> str:
        return p.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")

    return f"lowerdir={':'.join(esc(p) for p in lower)},upperdir={esc(upper)},workdir={esc(work)}"


def _file_mountpoint(root: str, inside: str) -> str:
    """A regular file at ``inside`` (``/etc/hosts``) of the container's tree to bind over.

    The image's own may be missing or a symlink; a symlink is replaced (in the writable
    layer) rather than followed, since here, before pivot_root, an absolute link would point
    into the host's tree.
    """
    path = root + inside
    parent = os.path.dirname(path)
    if os.path.islink(parent) or not os.path.realpath(parent).startswith(root.rstrip("/") + "/"):
        raise ContainerError(
            f"{os.path.dirname(inside)} in the image is a symlink; cannot mount {inside}"
        )
    os.makedirs(parent, exist_ok=True)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        os.unlink(path)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    return path


def prepare(payload: dict) -> None:
    """The mounts that need no PID namespace: the overlay root, the /etc files, /dev, /sys.

    The launcher runs this once it has made the namespaces, while the runtime plugs in the
    network (two processes, two cores); PID 1 does the rest (:func:`setup`). Marks the
    payload, which PID 1 inherits as the launcher's fork, so that it is done once.
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
    for source, inside in payload.get("binds", []):
        rootfs.bind(source, _file_mountpoint(target, inside), recursive=False)
    rootfs.prepare_root(target, new_net=payload["new_net"])
    payload["prepared"] = True


def setup(payload: dict) -> dict[str, str]:
    """Mount the container's root, pivot into it, become its user (payload from the runtime).

    Returns environment defaults learned inside (the user's HOME).
    """
    if not payload.get("prepared"):
        prepare(payload)  # the launcher could not (a user namespace), or was not asked to
    target = payload["target"]
    rootfs.setup_root(target, new_net=payload["new_net"], masks=payload["masks"], prepared=True)
    workdir = payload["workdir"]
    os.makedirs(workdir, exist_ok=True)  # Docker creates a missing working directory
    os.chdir(workdir)
    if payload.get("console"):
        console(payload.get("user") or "0")
    if payload.get("user"):
        return user.switch(payload["user"])
    return {"HOME": user.resolve("0")[3]}  # root stays root; HOME from the image's passwd


def console(owner: str = "0") -> None:
    """``-t`` as runc does it: a pseudo-terminal of the container's own, its master sent out.

    A terminal opened on the host belongs to the host's devpts: inside the container (which
    has a devpts instance of its own) its name leads nowhere, so ``tty`` says "not a tty".
    So the terminal is made here, from the container's ``/dev/ptmx``: the slave becomes
    stdin, stdout and stderr (the launcher then makes it the controlling terminal), and the
    master goes back to the caller over the Unix socket it passed as stdin (runc's
    ``--console-socket``), with SCM_RIGHTS: the caller relays between it and your terminal.
    """
    # openpty(3) opens /dev/ptmx and /dev/pts/N of the current root: the container's now.
    master, slave = os.openpty()
    uid = user.resolve(owner)[0]
    os.fchown(slave, uid, -1)  # the user's own terminal, as login(1) and runc make it
    sock = socket.socket(fileno=os.dup(0))
    try:
        socket.send_fds(sock, [b"console"], [master])
    finally:
        sock.close()
        os.close(master)  # only the caller holds the master now
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def exec_setup(payload: dict) -> dict[str, str]:
    """``containerlab exec``: the steps after joining a running container's namespaces.

    The launcher has already entered the container's mount namespace, so ``/`` is the
    container's root and ``/etc/passwd`` its own. Nothing may be imported from here on: the
    host's Python files are out of reach; this module was imported before joining.
    Returns environment defaults learned inside (the user's HOME).
    """
    workdir = payload.get("workdir") or "/"
    try:
        os.chdir(workdir)
    except OSError as e:
        # Docker does not create a missing -w directory for exec (run does): it refuses.
        raise ContainerError(
            f"chdir to cwd ({workdir!r}) set for exec failed: {(e.strerror or '').lower()}"
        ) from None
    who = payload.get("user") or ""
    if payload.get("console"):
        console(who or "0")
    if who:
        return user.switch(who)
    return {"HOME": user.resolve("0")[3]}

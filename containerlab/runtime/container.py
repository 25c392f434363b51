"""Start a container in the foreground: the heart of ``containerlab run --rm``.

The caller never forks itself into the container. It asks ``namespaces.spawn`` to start the
launcher (``containerlab.nsexec``, a fresh single-threaded Python), which creates the
namespaces, forks once so the command is PID 1 of the new PID namespace, and runs
``runtime.init.setup`` there (overlay root, /proc, /dev, /sys, pivot_root, masked paths)
before exec'ing the command. The runtime's own bookkeeping is one directory per container
under the run root, which holds the overlay's upper and work dirs and is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
from pathlib import Path
from typing import Any

from containerlab import host, namespaces, paths
from containerlab.errors import ContainerError, ImageNotFoundError, KernelFeatureError, NotRootError
from containerlab.image import base
from containerlab.image.reference import parse
from containerlab.image.store import Image, Store
from containerlab.runtime.spec import DEFAULT_PATH, ContainerSpec

#: Where the launcher finds the init steps to run inside the container.
INIT_ENTRY = "containerlab.runtime.init:setup"


def preflight(filesystems_text: str | None = None) -> None:
    """Refuse early, with the fix, what would otherwise fail halfway through."""
    if os.geteuid() != 0:
        raise NotRootError(
            "containerlab needs root to create namespaces and mounts; run it with sudo"
        )
    if filesystems_text is None:
        with open("/proc/filesystems") as f:
            filesystems_text = f.read()
    if "overlay" not in host.filesystems(filesystems_text):
        raise KernelFeatureError("the kernel has no overlayfs; load it with `modprobe overlay`")


def image_for(store: Store, ref: str) -> Image:
    """The image to run; the offline busybox base image is built on first use."""
    try:
        return store.image(ref)
    except ImageNotFoundError:
        if parse(ref) != parse(base.BASE_REF):
            raise
    base.ensure_base_image(store)
    return store.image(ref)


def command_for(spec: ContainerSpec, config: dict) -> list[str]:
    """Docker's rule: ENTRYPOINT + CMD, where ``run IMAGE ARGS`` replaces CMD and
    ``--entrypoint`` replaces ENTRYPOINT (and drops the image's CMD)."""
    if spec.entrypoint is not None:
        entrypoint, cmd = list(spec.entrypoint), []
    else:
        entrypoint, cmd = list(config.get("Entrypoint") or []), list(config.get("Cmd") or [])
    if spec.argv:
        cmd = list(spec.argv)
    argv = entrypoint + cmd
    if not argv:
        raise ContainerError(
            f"no command specified: image '{spec.image}' has no Cmd or "
            "Entrypoint; give one after the image name"
        )
    return argv


def env_for(spec: ContainerSpec, config: dict, hostname: str) -> dict[str, str]:
    """The image's Env, Docker's defaults for what it leaves out, then the user's ``-e``."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    env.update(spec.env)
    return env


class Container:
    """A running foreground container. Use as a context manager: leaving it kills what is
    still running and removes the container's directory."""

    def __init__(self, spec: ContainerSpec, cid: str, directory: Path):
        self.spec = spec
        self.id = cid
        self.dir = directory
        self.process: namespaces.NsProcess | None = None
        self.resources = contextlib.ExitStack()  # what is released when it is removed

    @property
    def pid(self) -> int:
        """The container's PID 1 as the host sees it."""
        if self.process is None:
            raise ContainerError(f"container {self.id[:12]} is not running")
        return self.process.child_pid

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to exit; its exit code (128+N when killed by signal N)."""
        if self.process is None:
            raise ContainerError(f"container {self.id[:12]} was never started")
        return self.process.wait(timeout)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the launcher, which forwards it to the container's PID 1."""
        if self.process is not None and self.process.returncode is None:
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Kill what still runs, then delete the container's directory (its writable layer)."""
        if self.process is not None:
            self.process.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.resources.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]} image={self.spec.image} argv={list(self.spec.argv)}>"


def start(
    spec: ContainerSpec, *, stdin: Any = None, stdout: Any = None, stderr: Any = None
) -> Container:
    """Create and start a container; returns once its command has been exec'd.

    Raises ``ImageNotFoundError``, ``CommandNotFoundError`` (127),
    ``CommandNotExecutableError`` (126) or another ``ContainerlabError``; on any failure
    nothing is left behind.
    """
    preflight()
    store = Store()
    image = image_for(store, spec.image)
    config = image.run_config
    argv = command_for(spec, config)
    cid = secrets.token_hex(32)
    directory = paths.run_root() / "containers" / cid
    container = Container(spec, cid, directory)
    hostname = spec.hostname or cid[:12]
    try:
        # The lease keeps `rmi`/`image prune` from removing layers this container uses.
        container.resources.enter_context(store.lease(cid, image))
        lowers = store.layer_dirs(image)  # bottom first; unpacked once, shared by all
        for sub in ("upper", "work", "rootfs"):
            (directory / sub).mkdir(parents=True)
        payload = {
            "lower": [str(p) for p in reversed(lowers)],  # overlayfs wants the top first
            "upper": str(directory / "upper"),
            "work": str(directory / "work"),
            "target": str(directory / "rootfs"),
            "workdir": spec.workdir or config.get("WorkingDir") or "/",
            "user": spec.user if spec.user is not None else config.get("User") or "",
            "new_net": "net" in spec.namespaces,
            "masks": spec.masked_paths,
        }
        ns_spec = namespaces.NamespaceSpec(
            new=frozenset(spec.namespaces),
            hostname=hostname if "uts" in spec.namespaces else None,
        )
        container.process = namespaces.spawn(
            argv,
            ns_spec,
            env=env_for(spec, config, hostname),
            setup=(INIT_ENTRY, payload),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
    except BaseException:
        container.remove()
        raise
    return container


#: Signals `run` passes on to the container, as Docker's sig-proxy does.
PROXIED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def run(spec: ContainerSpec, *, proxy_signals: bool = False, **stdio: Any) -> int:
    """Run a container to completion and remove it; returns the command's exit code.

    With ``proxy_signals`` (the CLI sets it), signals this process receives are passed on
    to the container instead of killing this process.
    """
    with start(spec, **stdio) as container:
        if not proxy_signals:
            return container.wait()
        previous = {s: signal.signal(s, lambda n, _f: container.signal(n)) for s in PROXIED_SIGNALS}
        try:
            return container.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

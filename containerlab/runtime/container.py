"""Create a container and launch it: the heart of ``containerlab run``.

``create`` resolves the image and writes the container's record (see ``state``): the
command, environment and settings, the image held against garbage collection, a directory
for its writable layer. Nothing runs yet.

``launch`` starts it. The caller never forks itself into the container: it asks
``namespaces.spawn`` to start the launcher (``containerlab.nsexec``, a fresh
single-threaded Python), which creates the namespaces, forks once so the command is PID 1
of the new PID namespace, and runs ``runtime.init.setup`` there (overlay root, /proc, /dev,
/sys, pivot_root, masked paths, user) before exec'ing the command. Whoever launches is the
container's *supervisor*: it waits for the command and records how it ended. For a
foreground ``run`` that is the CLI (or a notebook, through :class:`Container`); for
``run -d`` it is ``runtime.supervisor``, a small process that outlives the CLI.
"""

from __future__ import annotations

import contextlib
import os
import signal

from containerlab import namespaces
from containerlab.errors import (
    ContainerError,
    ContainerlabError,
    ImageNotFoundError,
    KernelFeatureError,
    NotRootError,
)
from containerlab.image.reference import parse
from containerlab.image.store import Image, Store
from containerlab.runtime import networking, state
from containerlab.runtime.spec import DEFAULT_PATH, ContainerSpec

TYPE_CHECKING = False  # typing costs 2 ms to import on every container start
if TYPE_CHECKING:
    from typing import Any

#: Where the launcher finds the init steps to run inside the container.
INIT_ENTRY = "containerlab.runtime.init:setup"
#: ...and the first of them, which the launcher does while the network is plugged in.
INIT_EARLY_ENTRY = "containerlab.runtime.init:prepare"


def preflight(filesystems_text: str | None = None) -> None:
    """Refuse early, with the fix, what would otherwise fail halfway through."""
    if os.geteuid() != 0:
        raise NotRootError(
            "containerlab needs root to create namespaces and mounts; run it with sudo"
        )
    if filesystems_text is None:
        with open("/proc/filesystems") as f:
            filesystems_text = f.read()
    if "overlay" not in filesystems_text.split():  # lines of "[nodev]\tTYPE"
        raise KernelFeatureError("the kernel has no overlayfs; load it with `modprobe overlay`")


def image_for(store: Store, ref: str) -> Image:
    """The image to run; the offline busybox base image is built on first use."""
    try:
        return store.image(ref)
    except ImageNotFoundError:
        # Imported here: building the base image needs tar and digests, a start does not.
        from containerlab.image import base

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


def create(spec: ContainerSpec) -> state.Record:
    """Write a container's record (status "created"); nothing runs yet.

    Everything the container will hold on the host is recorded before it exists: its
    directory, and the image it holds in the store (released by ``remove``), so that ``rm``
    and ``system doctor`` can always undo it.
    """
    preflight()
    store = Store()
    image = image_for(store, spec.image)
    config = image.run_config
    argv = command_for(spec, config)
    network = networking.config_from(spec)  # a bad -p or an unknown network fails here
    cid = os.urandom(32).hex()
    hostname = spec.hostname or cid[:12]

    def prepare(d) -> None:
        # Under the record's lock, before it is complete: a killed create leaves a hold
        # and a directory that `system doctor` can tell from a create in progress.
        store.hold(cid, image)
        for sub in ("upper", "work", "rootfs"):
            (d / sub).mkdir()

    try:
        return state.create(
            cid,
            {
                "name": spec.name or "",
                "image": spec.image,
                "image_digest": image.digest,
                "image_id": image.id,
                "argv": argv,
                "env": env_for(spec, config, hostname),
                "workdir": spec.workdir or config.get("WorkingDir") or "/",
                "user": spec.user if spec.user is not None else config.get("User") or "",
                "hostname": hostname,
                "namespaces": sorted(spec.namespaces),
                "masked_paths": spec.masked_paths,
                "tty": spec.tty,
                "interactive": spec.interactive,
                "init": spec.init,
                "auto_remove": spec.auto_remove,
                "stop_signal": config.get("StopSignal") or "SIGTERM",
                # Its networks, ports and names: every veth, address and rule derives from
                # this and the id (see runtime/networking.py).
                "network": network,
                # The cgroup it will run in, named before it exists (see `system doctor`).
                "cgroup": {"name": f"clab-{cid[:12]}", "limits": limits_dict(spec.limits)},
                # Who created it: a --rm container still "created" after its creator died
                # was never started and never will be (see `system doctor`).
                "creator_pid": os.getpid(),
                "creator_start": state.process_start(os.getpid()),
            },
            prepare=prepare,
        )
    except BaseException:
        store.release(cid)
        raise


def launch(
    record: state.Record,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    console: bool = False,
    adopt: bool = False,  # see namespaces.spawn: a subreaper caller waits for PID 1 itself
) -> namespaces.NsProcess:
    """Start a created (or exited) container's command; returns once it has been exec'd.

    The caller becomes its supervisor: it must ``wait()`` for the returned process and
    record the exit (``finish``). Raises ``CommandNotFoundError`` (127),
    ``CommandNotExecutableError`` (126) or another ``ContainerlabError`` when the command
    could not start; the record then says so and stays startable. ``console``: ``stdin``
    is a Unix socket; the container's own terminal is made inside and its master sent
    back over it (see ``init.console``).
    """
    cfg = record.config
    store = Store()
    lowers = store.layer_dirs(store.image(cfg["image_digest"]))  # bottom first, shared
    payload = {
        "lower": [str(p) for p in reversed(lowers)],  # overlayfs wants the top first
        "upper": str(record.dir / "upper"),
        "work": str(record.dir / "work"),
        "target": str(record.dir / "rootfs"),
        "workdir": cfg["workdir"],
        "user": cfg["user"],
        "new_net": "net" in cfg["namespaces"],
        "masks": cfg["masked_paths"],
        "console": console,
    }
    new, join = networking.namespace_plan(record)
    payload["new_net"] = "net" in new
    payload["binds"] = networking.write_files(record)
    ns_spec = namespaces.NamespaceSpec(
        new=new,
        join=join,
        hostname=cfg["hostname"] if "uts" in cfg["namespaces"] else None,
    )
    cg = make_cgroup(cfg)

    def before_go(launcher: int) -> None:
        # The launcher has made the namespaces and waits: the outside work happens now.
        # Its network namespace gets its veths and addresses.
        networking.plug(record, launcher)

    try:
        proc = namespaces.spawn(
            cfg["argv"],
            ns_spec,
            env=cfg["env"],
            setup=(INIT_ENTRY, payload),
            setup_early=INIT_EARLY_ENTRY,
            tty=cfg["tty"],
            init=cfg["init"],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            before_go=before_go,
            prepare=lambda: networking.prepare(record),
            # The launcher joins the cgroup itself right before it forks, so every process
            # of the container is born inside its limits, and leaves it once forked.
            cgroup=cg,
            adopt=adopt,
        )
    except ContainerlabError as e:
        _undo_start(record, cg)
        state.update(record.id, error=str(e), exit_code=e.exit_code)
        raise
    except BaseException:
        _undo_start(record, cg)
        raise
    state.update(
        record.id,
        status="running",
        pid=proc.child_pid,
        pid_start=state.process_start(proc.child_pid),
        supervisor_pid=os.getpid(),
        supervisor_start=state.process_start(os.getpid()),
        started_at=state.now(),
        finished_at="",
        exit_code=None,
        error="",
    )
    return proc


def _undo_start(record: state.Record, cg: Any) -> None:
    if cg is not None:
        cg.remove()
    networking.unplug(record)


def limits_dict(limits: Any) -> dict[str, Any]:
    """Limits as plain data for the record (only what was set)."""
    if limits is None:
        return {}
    from dataclasses import asdict

    return {k: v for k, v in asdict(limits).items() if v not in (None, (), [])}


def cgroup_limits(cfg: dict[str, Any]):
    from containerlab import cgroups

    return cgroups.Limits(**(cfg.get("cgroup") or {}).get("limits", {}))


def make_cgroup(cfg: dict[str, Any]):
    """The container's cgroup with its limits: created at each start, removed at each exit."""
    if not cfg.get("cgroup"):
        return None
    from containerlab import cgroups

    name = cfg["cgroup"]["name"]
    with contextlib.suppress(ContainerlabError):
        cgroups.Cgroup.open(name).remove()  # a leftover of a start that was killed
    return cgroups.Cgroup.create(name, cgroup_limits(cfg))


def open_cgroup(cfg: dict[str, Any]):
    """The container's cgroup if it exists (while it runs), else None."""
    if not cfg.get("cgroup"):
        return None
    from containerlab import cgroups

    try:
        return cgroups.Cgroup.open(cfg["cgroup"]["name"])
    except ContainerlabError:
        return None


def finish(cid: str, exit_code: int) -> state.Record:
    """Record that a container's command ended (the supervisor calls this).

    Its cgroup goes with it, after one last look: a kill by the kernel's OOM killer inside
    it is what Docker reports as ``OOMKilled`` (the exit code alone, 137, cannot tell an
    OOM kill from ``docker kill``).
    """
    oom = False
    try:
        cg = open_cgroup(state.load(cid).config)
    except state.NoSuchContainerError:
        cg = None
    if cg is not None:
        with contextlib.suppress(ContainerlabError):
            oom = bool(cg.oom_kills())
    # Its addresses back to the pools and its ports closed *before* it is recorded exited:
    # whoever waits for "exited" (`stop`, then `network rm`) finds them released.
    with contextlib.suppress(state.NoSuchContainerError):
        networking.unplug(state.load(cid), exited=True)
    rec = state.update(
        cid, status="exited", pid=0, exit_code=exit_code, finished_at=state.now(), oom_killed=oom
    )
    if cg is not None:
        # The exit is recorded first: a cgroup kept busy by a process nobody reaps yet (a
        # zombie) must not lose it. What stays is found by `system doctor`.
        with contextlib.suppress(ContainerlabError):
            cg.remove()
    return rec


def remove_record(cid: str) -> None:
    """Delete an exited container: its record, its writable layer, its hold on the image."""
    # The record first, the hold last: a removal killed in between leaves a hold on no
    # container (which `system doctor` finds), never a container whose image can vanish.
    with contextlib.suppress(state.NoSuchContainerError):
        rec = state.load(cid)
        cg = open_cgroup(rec.config)
        if cg is not None:
            cg.remove()
        networking.unplug(rec)  # nothing left if it exited cleanly; a killed start's leftovers
    state.delete(cid)
    Store().release(cid)


class Container:
    """A container this process supervises (a foreground ``run``, or a notebook cell).

    Use as a context manager: leaving it kills what still runs and removes the container.
    """

    def __init__(self, record: state.Record, process: namespaces.NsProcess):
        self.record = record
        self.id = record.id
        self.dir = record.dir
        self.process = process
        self._exit: int | None = None

    @property
    def pid(self) -> int:
        """The container's PID 1 as the host sees it."""
        return self.process.child_pid

    @property
    def name(self) -> str:
        return self.record.name

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to exit; its exit code (128+N when killed by signal N)."""
        if self._exit is None:
            self._exit = self.process.wait(timeout)
            finish(self.id, self._exit)
        return self._exit

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the launcher, which forwards it to the container's PID 1."""
        if self.process.returncode is None:
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Kill what still runs, record the exit, and remove the container."""
        self.process.close()
        if self._exit is None:
            self.wait()
        remove_record(self.id)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]} {self.name} argv={self.record.config['argv']}>"


def start(
    spec: ContainerSpec,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    console: bool = False,
) -> Container:
    """Create and launch a container supervised by this process (see :class:`Container`).

    Raises ``ImageNotFoundError``, ``CommandNotFoundError`` (127),
    ``CommandNotExecutableError`` (126) or another ``ContainerlabError``; on any failure
    nothing is left behind.
    """
    record = create(spec)
    try:
        proc = launch(record, stdin=stdin, stdout=stdout, stderr=stderr, console=console)
    except BaseException:
        remove_record(record.id)
        raise
    return Container(state.load(record.id), proc)


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
    """Run a container to completion; returns the command's exit code.

    It is removed afterwards when ``spec.auto_remove`` (``--rm``) is set, and always when
    the command could not even start. With ``proxy_signals`` (the CLI sets it), signals
    this process receives are passed on to the container instead of killing this process.
    """
    # Handlers go in before the container starts: a signal that arrives while it is being
    # set up is held, then passed on once there is a command to receive it.
    started: list[Container] = []
    pending: list[int] = []

    def proxy(signum: int, _frame: object) -> None:
        if started:
            started[0].signal(signum)
        else:
            pending.append(signum)

    previous = {s: signal.signal(s, proxy) for s in PROXIED_SIGNALS} if proxy_signals else {}
    try:
        c = start(spec, **stdio)
    except BaseException:
        for s, handler in previous.items():
            signal.signal(s, handler)
        raise
    started.append(c)
    try:
        for signum in pending:
            c.signal(signum)
        return c.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        c.process.close()
        c.wait()
        if spec.auto_remove:
            remove_record(c.id)

"""What happens to a container after it is created: start, stop, kill, wait, restart, rm.

Every verb works from the record (``state``) and the kernel, never from memory: it can be
called from any process (another CLI, a notebook) while the container's supervisor is
elsewhere. Signals go straight to the container's PID 1, as the host sees it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
from collections.abc import Iterator
from typing import Any

from containerlab.errors import ContainerError
from containerlab.runtime import container, networking, state


def get(name_or_id: str) -> state.Record:
    """The container's record, truthful (see ``state.refresh``)."""
    return state.refresh(state.load(state.resolve(name_or_id)))


def parse_signal(sig: str | int) -> int:
    """``9``, ``KILL``, ``SIGKILL`` -> 9, as ``docker kill -s`` accepts them."""
    if isinstance(sig, int) or str(sig).isdigit():
        return int(sig)
    name = str(sig).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ContainerError(f"invalid signal: {sig}") from None


def wait_pid_exit(pid: int, start: int, timeout: float | None) -> bool:
    """Wait for a process that is not our child to exit (a pidfd, no polling); True if it did."""
    if not state.alive(pid, start):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not state.alive(pid, start):  # the pid was reused between the check and the open
            return True
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _wait_recorded(cid: str, timeout: float = 10.0) -> state.Record:
    """Wait until the supervisor has written the exit down (or is found dead)."""
    deadline = time.monotonic() + timeout
    while True:
        rec = state.refresh(state.load(cid))
        if not rec.running or time.monotonic() > deadline:
            return rec
        time.sleep(0.02)


def start(name_or_id: str) -> state.Record:
    """Start a created or exited container in the background, under a supervisor."""
    from containerlab.runtime import supervisor

    rec = get(name_or_id)
    if rec.running:
        return rec
    supervisor.start_detached(rec.id)
    return state.load(rec.id)


def kill(name_or_id: str, sig: str | int = signal.SIGKILL) -> state.Record:
    """Send a signal to the container's PID 1 (``docker kill``)."""
    rec = get(name_or_id)
    if not rec.running:
        raise ContainerError(f"container {rec.name} ({rec.short_id}) is not running")
    try:
        os.kill(rec.state.pid, parse_signal(sig))
    except ProcessLookupError:
        pass  # it exited meanwhile: what kill wanted
    return rec


def stop(name_or_id: str, timeout: float | None = None) -> state.Record:
    """``docker stop``: the stop signal (SIGTERM), then SIGKILL after ``timeout`` seconds.

    PID 1 of a PID namespace gets no default signal handling: a process that installed no
    SIGTERM handler ignores it, and only SIGKILL (which cannot be ignored) ends it. That is
    why ``stop`` on a plain ``sleep`` takes the whole grace period.
    """
    rec = get(name_or_id)
    if not rec.running:
        return rec
    grace = 10.0 if timeout is None else float(timeout)
    pid, start_t = rec.state.pid, rec.state.pid_start
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, parse_signal(rec.config.get("stop_signal", "SIGTERM")))
    if not wait_pid_exit(pid, start_t, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_pid_exit(pid, start_t, None)
    try:
        return _wait_recorded(rec.id)
    except state.NoSuchContainerError:
        return rec  # removed meanwhile (a racing `rm -f`, or --rm): it is stopped for good


def wait(name_or_id: str, timeout: float | None = None) -> int:
    """Block until the container exits; its exit code (``docker wait``)."""
    rec = get(name_or_id)
    if rec.running:
        if not wait_pid_exit(rec.state.pid, rec.state.pid_start, timeout):
            raise ContainerError(f"container {rec.short_id} is still running after {timeout}s")
        rec = _wait_recorded(rec.id)
    if rec.state.exit_code is None:
        raise ContainerError(f"container {rec.name} ({rec.short_id}) has not run yet")
    return int(rec.state.exit_code)


def restart(name_or_id: str, timeout: float | None = None) -> state.Record:
    rec = stop(name_or_id, timeout)
    state.update(rec.id, restart_count=rec.state.restart_count + 1)
    return start(rec.id)


def remove(name_or_id: str, force: bool = False) -> str:
    """``docker rm``: a running container only with ``force`` (then it is killed first)."""
    rec = get(name_or_id)
    if rec.running:
        if not force:
            raise ContainerError(
                f"cannot remove container {rec.name} ({rec.short_id}): it is running; "
                "stop it first, or use rm -f"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.state.pid, signal.SIGKILL)
        wait_pid_exit(rec.state.pid, rec.state.pid_start, 10)
        sup, sup_start = rec.state.supervisor_pid, rec.state.supervisor_start
        try:
            rec = _wait_recorded(rec.id)
        except state.NoSuchContainerError:
            return rec.id  # its --rm, or a racing rm, removed it meanwhile
        # A detached container's supervisor exits right after recording the exit: wait for
        # it, so that nothing of the container is left once `rm -f` returns. (A foreground
        # supervisor, a CLI or a notebook, lives on and is not waited for.)
        if _is_supervisor(sup):
            wait_pid_exit(sup, sup_start, 5)
    try:
        state.mark_removing(rec.id)
    except state.NoSuchContainerError:
        return rec.id  # removed meanwhile by someone else: what rm wanted
    container.remove_record(rec.id)
    return rec.id


def _is_supervisor(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"containerlab.runtime.supervisor" in f.read()
    except OSError:
        return False


def rename(name_or_id: str, new: str) -> state.Record:
    return state.rename(state.resolve(name_or_id), new)


# --- resources: cgroups ------------------------------------------------------------------------
def _cgroup(rec: state.Record):
    cg = container.open_cgroup(rec.config)
    if cg is None or not rec.running:
        raise ContainerError(f"container {rec.name} ({rec.short_id}) is not running")
    return cg


def pause(name_or_id: str) -> state.Record:
    """``docker pause``: freeze every process of the container (the cgroup freezer)."""
    rec = get(name_or_id)
    if rec.state.status == "paused":
        raise ContainerError(f"container {rec.name} ({rec.short_id}) is already paused")
    _cgroup(rec).freeze()
    return state.update(rec.id, status="paused")


def unpause(name_or_id: str) -> state.Record:
    rec = get(name_or_id)
    if rec.state.status != "paused":
        raise ContainerError(f"container {rec.name} ({rec.short_id}) is not paused")
    _cgroup(rec).thaw()
    return state.update(rec.id, status="running")


def update(name_or_id: str, **limits: Any) -> state.Record:
    """``docker update``: change a container's limits; a running one feels them at once."""
    rec = get(name_or_id)
    cfg = dict(rec.config)
    cgroup_cfg = dict(cfg.get("cgroup") or {})
    merged = {**cgroup_cfg.get("limits", {}), **{k: v for k, v in limits.items() if v is not None}}
    cgroup_cfg["limits"] = merged
    cfg["cgroup"] = cgroup_cfg
    new_limits = container.cgroup_limits(cfg)  # validates before anything changes
    if rec.running:
        _cgroup(rec).apply(new_limits)
    return state.set_config(rec.id, cfg)


def stats(name_or_id: str):
    """One reading of the container's cgroup (``docker stats --no-stream``)."""
    return _cgroup(get(name_or_id)).read()


# --- looking inside -------------------------------------------------------------------------
def processes(name_or_id: str) -> list[dict[str, Any]]:
    """The container's processes (``docker top``): every process in its PID namespace."""
    rec = get(name_or_id)
    if not rec.running:
        raise ContainerError(f"container {rec.name} ({rec.short_id}) is not running")
    try:
        ns = os.stat(f"/proc/{rec.state.pid}/ns/pid").st_ino
    except FileNotFoundError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino != ns:
                continue
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        out.append(
            {
                "pid": int(entry),
                "ppid": int(status["PPid"]),
                "inner_pid": int(status["NSpid"].split()[-1]),
                "uid": int(status["Uid"].split()[0]),
                "state": status["State"].strip(),
                "cmd": cmd or f"[{status['Name'].strip()}]",
            }
        )
    return sorted(out, key=lambda p: p["inner_pid"])


def log_entries(
    name_or_id: str, *, tail: int | None = None, follow: bool = False
) -> Iterator[dict[str, str]]:
    """The container's log lines (``docker logs``), optionally following until it exits."""
    from containerlab.runtime.supervisor import LOG_NAME

    rec = get(name_or_id)
    path = rec.dir / LOG_NAME
    if not path.exists():
        if not follow:
            return
        path.touch()
    with open(path, "rb") as f:
        lines = f.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            with contextlib.suppress(ValueError):
                yield json.loads(line)
        while follow:
            line = f.readline()
            if line:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)
                continue
            if not get(rec.id).running:
                for line in f.readlines():  # what came in after the last read
                    with contextlib.suppress(ValueError):
                        yield json.loads(line)
                return
            time.sleep(0.05)


def _host_limits(cfg: dict[str, Any]) -> dict[str, Any]:
    """The limits as ``docker inspect`` names them in HostConfig (0: unlimited)."""
    lim = (cfg.get("cgroup") or {}).get("limits", {})
    return {
        "Memory": lim.get("memory") or 0,
        "MemorySwap": lim.get("memory_swap") or 0,
        "NanoCpus": int((lim.get("cpus") or 0) * 1e9),
        "CpuShares": lim.get("cpu_shares") or 0,
        "CpusetCpus": lim.get("cpuset_cpus") or "",
        "PidsLimit": lim.get("pids") or 0,
        "CgroupName": (cfg.get("cgroup") or {}).get("name", ""),
    }


def inspect(name_or_id: str) -> dict[str, Any]:
    """The container as ``docker inspect`` shows it."""
    rec = get(name_or_id)
    cfg, st = rec.config, rec.state
    return {
        "Id": rec.id,
        "Created": cfg.get("created"),
        "Path": cfg["argv"][0],
        "Args": cfg["argv"][1:],
        "State": {
            "Status": st.status,
            "Running": st.status == "running",
            "Paused": st.status == "paused",
            "Pid": st.pid,
            "ExitCode": st.exit_code if st.exit_code is not None else 0,
            "Error": st.error,
            "StartedAt": st.started_at or "0001-01-01T00:00:00Z",
            "FinishedAt": st.finished_at or "0001-01-01T00:00:00Z",
            "OOMKilled": st.oom_killed,
        },
        "Image": cfg.get("image_id"),
        "Name": "/" + rec.name,
        "RestartCount": st.restart_count,
        "HostConfig": {
            "AutoRemove": cfg.get("auto_remove", False),
            "Init": cfg.get("init", False),
            "NetworkMode": networking.mode_name(cfg.get("network") or {"mode": "none"}),
            "PortBindings": (cfg.get("network") or {}).get("publish", []),
            "PublishAllPorts": (cfg.get("network") or {}).get("publish_all", False),
            "Dns": (cfg.get("network") or {}).get("dns", []),
            "ExtraHosts": [":".join(h) for h in (cfg.get("network") or {}).get("add_hosts", [])],
            **_host_limits(cfg),
        },
        "Config": {
            "Hostname": cfg.get("hostname"),
            "User": cfg.get("user", ""),
            "Tty": cfg.get("tty", False),
            "OpenStdin": cfg.get("interactive", False),
            "Env": [f"{k}={v}" for k, v in cfg.get("env", {}).items()],
            "Cmd": cfg["argv"],
            "Image": cfg.get("image"),
            "WorkingDir": cfg.get("workdir"),
            "StopSignal": cfg.get("stop_signal", "SIGTERM"),
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": str(rec.dir / "upper"),
                "WorkDir": str(rec.dir / "work"),
                "MergedDir": str(rec.dir / "rootfs"),
            },
        },
        "NetworkSettings": networking.settings(rec),
        "LogPath": str(rec.dir / "container.log"),
    }

"""The container records: what exists, in which state, safe under concurrent use.

Every container is a directory ``<state root>/containers/<id>/`` holding ``config.json``
(what was asked for, written once), ``state.json`` (what is true now) and its writable
layer. A state change takes the container's lock (``flock`` on ``lock``), reads, changes and
writes ``state.json`` through a temporary file and a rename: two CLIs, a supervisor and a
notebook can act at once and no write is lost or torn.

Names are unique by construction: ``names/<name>`` is a symlink to the id, and creating a
symlink that already exists fails atomically.

The state machine (as Docker's):

    created --start--> running --(exit, kill, stop)--> exited --start--> running
       |                  |  ^                            |
       |                pause unpause                     |
       |                  v  |                            |
       |                paused                            |
       +-------------------------------rm-----------------+--> (removed)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from containerlab import paths
from containerlab.errors import ContainerError
from containerlab.runtime.clock import now  # state.now, as its callers know it

# Types for annotations only: importing typing costs every container start ~2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATES = ("created", "running", "paused", "exited", "removing")

#: Exit code recorded when a container's processes vanished with nobody watching (its
#: supervisor was killed, or the machine rebooted): Docker shows 255 for these too.
EXIT_UNKNOWN = 255


class NoSuchContainerError(ContainerError):
    """No container has that name or id."""

    exit_code = 1


@dataclass(frozen=True)
class State:
    """What is true about a container now."""

    status: str = "created"  # one of STATES
    pid: int = 0  # the container's PID 1 as the host sees it (0 when not running)
    pid_start: int = 0  # its start time in clock ticks: tells a reused pid from ours
    supervisor_pid: int = 0  # who waits for it: the supervisor (-d) or the CLI (foreground)
    supervisor_start: int = 0  # the supervisor's start time (see pid_start)
    started_at: str = ""  # RFC 3339, UTC
    finished_at: str = ""
    exit_code: int | None = None
    error: str = ""  # why it failed to start, or why the exit code is unknown
    oom_killed: bool = False
    restart_count: int = 0


@dataclass(frozen=True)
class Record:
    """One container: its id, its directory, its config and its state."""

    id: str
    dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    state: State = field(default_factory=State)

    @property
    def name(self) -> str:
        return str(self.config.get("name", ""))

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state.status in ("running", "paused")


def root() -> Path:
    return paths.state_root() / "containers"


def names_dir() -> Path:
    return paths.state_root() / "names"


def container_dir(cid: str) -> Path:
    return root() / cid


# --- files ----------------------------------------------------------------------------------
def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half


@contextlib.contextmanager
def locked(cid: str) -> Iterator[None]:
    """The container's lock: one state change at a time, across processes.

    The lock file is opened, never created: ``create`` makes it, and a record being removed
    must not get it back (an open with O_CREAT would recreate it in a half-removed directory).
    """
    d = container_dir(cid)
    try:
        fd = os.open(d / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoSuchContainerError(f"no such container: {cid[:12]}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def busy(cid: str) -> bool:
    """Whether a process holds the container's lock right now (a ``create`` in progress
    holds it until the record is complete). A dead holder holds nothing: the kernel drops
    an flock with the last descriptor, so a killed ``create`` leaves its lock free."""
    try:
        fd = os.open(container_dir(cid) / "lock", os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def load(cid: str) -> Record:
    d = container_dir(cid)
    try:
        config = json.loads((d / "config.json").read_text())
        state = State(**json.loads((d / "state.json").read_text()))
    except FileNotFoundError:
        raise NoSuchContainerError(f"no such container: {cid[:12]}") from None
    return Record(cid, d, config, state)


def update(cid: str, **changes: Any) -> Record:
    """Change a container's state under its lock; returns the new record."""
    with locked(cid):
        rec = load(cid)
        state = replace(rec.state, **changes)
        _write_json(rec.dir / "state.json", asdict(state))
        return replace(rec, state=state)


# --- creation, names, lookup ------------------------------------------------------------------
def valid_name(name: str) -> bool:
    """Docker's rule for names: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``."""
    import re

    return bool(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name))


def _reserve_name(name: str, cid: str) -> None:
    if not valid_name(name):
        raise ContainerError(
            f"invalid container name '{name}': use letters, digits and _.- "
            "(at least two characters, starting with a letter or digit)"
        )
    names_dir().mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(cid, names_dir() / name)
    except FileExistsError:
        owner = os.readlink(names_dir() / name)
        raise ContainerError(
            f'the container name "/{name}" is already in use by container {owner[:12]}; '
            "remove or rename that container to be able to reuse the name"
        ) from None


def _random_name() -> str:
    left = (
        "brave",
        "calm",
        "eager",
        "fond",
        "gentle",
        "happy",
        "keen",
        "lucid",
        "merry",
        "nifty",
        "proud",
        "quirky",
        "sharp",
        "tender",
        "vivid",
        "wise",
        "zen",
        "bold",
    )
    right = (
        "turing",
        "lovelace",
        "hopper",
        "ritchie",
        "thompson",
        "torvalds",
        "hamilton",
        "knuth",
        "dijkstra",
        "liskov",
        "perlman",
        "kernighan",
        "bell",
        "wozniak",
    )
    # Two random bytes, not the random module: its import costs more than the name is worth.
    a, b = os.urandom(2)
    return f"{left[a % len(left)]}_{right[b % len(right)]}"


def create(
    cid: str, config: dict[str, Any], prepare: Callable[[Path], None] | None = None
) -> Record:
    """Write a new container's record; its name (given, or a random one) is reserved too.

    The directory and its lock come first, and the lock is held until the record is
    complete: ``config.json`` is written last and marks it so (``all_ids`` lists only
    those). ``prepare(dir)`` runs before that, under the lock (the runtime holds the image
    and makes the layer directories there). Whatever a killed ``create`` leaves is then a
    directory without ``config.json`` whose lock nobody holds, and a name pointing at it:
    ``system doctor`` finds both, and never mistakes a ``create`` in progress for them.
    """
    d = container_dir(cid)
    root().mkdir(parents=True, exist_ok=True)
    d.mkdir()
    name = config.get("name") or ""
    try:
        fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if name:
                _reserve_name(name, cid)
            else:
                for _ in range(50):
                    name = _random_name() + (f"_{os.urandom(2).hex()}" if _ else "")
                    try:
                        _reserve_name(name, cid)
                        break
                    except ContainerError:
                        name = ""
                        continue
            config = {**config, "name": name, "id": cid, "created": now()}
            _write_json(d / "state.json", asdict(State()))
            if prepare is not None:
                prepare(d)
            _write_json(d / "config.json", config)  # last: the record is complete
        finally:
            os.close(fd)
    except BaseException:
        if name:
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(names_dir() / name) == cid:
                    os.unlink(names_dir() / name)
        shutil.rmtree(d, ignore_errors=True)
        raise
    return Record(cid, d, config, State())


def set_config(cid: str, config: dict[str, Any]) -> Record:
    """Replace a container's config (``update``), under its lock."""
    with locked(cid):
        rec = load(cid)
        _write_json(rec.dir / "config.json", config)
        return replace(rec, config=config)


def rename(cid: str, new: str) -> Record:
    """Give a container a new name: the new one is reserved first (so of many renames to one
    name exactly one wins), then the record changed under its lock, then the old name freed."""
    load(cid)
    _reserve_name(new, cid)
    try:
        with locked(cid):
            rec = load(cid)
            config = {**rec.config, "name": new}
            _write_json(rec.dir / "config.json", config)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(names_dir() / new) == cid:
                os.unlink(names_dir() / new)
        raise
    with contextlib.suppress(FileNotFoundError):
        if os.readlink(names_dir() / rec.name) == cid:
            os.unlink(names_dir() / rec.name)
    return replace(rec, config=config)


def delete(cid: str) -> None:
    """Remove the record and its name (the caller has stopped everything first).

    Under the lock, ``config.json`` goes first: from that instant the record no longer
    exists for anyone (``load`` fails, ``all_ids`` skips it), and a removal killed halfway
    leaves only a directory without a record, which ``system doctor`` removes.
    """
    try:
        with locked(cid):
            rec = load(cid)
            os.unlink(rec.dir / "config.json")
    except NoSuchContainerError:
        return
    with contextlib.suppress(FileNotFoundError):
        if os.readlink(names_dir() / rec.name) == cid:
            os.unlink(names_dir() / rec.name)
    shutil.rmtree(rec.dir, ignore_errors=True)


def all_ids() -> list[str]:
    if not root().is_dir():
        return []
    return [p.name for p in root().iterdir() if (p / "config.json").exists()]


def resolve(name_or_id: str) -> str:
    """Docker's lookup: a full id, a name (with or without a leading /), an id prefix."""
    key = name_or_id.lstrip("/")
    if not key:
        raise NoSuchContainerError("no such container: (empty name)")
    link = names_dir() / key
    if link.is_symlink():
        cid = os.readlink(link)
        if (container_dir(cid) / "config.json").exists():
            return cid
    ids = all_ids()
    if key in ids:
        return key
    matches = [i for i in ids if i.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ContainerError(f"multiple containers match id prefix '{key}': be more precise")
    raise NoSuchContainerError(f"no such container: {name_or_id}")


# --- telling the truth ------------------------------------------------------------------------
def process_start(pid: int) -> int:
    """A process's start time (clock ticks since boot), 0 if it is gone. With the pid it
    names one process for ever: a pid can be reused, the pair cannot."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    if fields[0] == "Z":  # a zombie has exited: only its parent's wait is missing
        return 0
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and start > 0 and process_start(pid) == start


def _orphaned(rec: Record) -> bool:
    """Running on paper, but neither the container nor anyone watching it is alive."""
    st = rec.state
    return (
        st.status in ("running", "paused")
        and not alive(st.pid, st.pid_start)
        and not alive(st.supervisor_pid, st.supervisor_start)
    )


def refresh(rec: Record) -> Record:
    """The record, corrected if its processes died with nobody watching (kill -9, reboot).

    While a supervisor lives it records the real exit code itself; only when it is gone too
    is the container marked exited here, with Docker's "unknown" code 255.
    """
    if not _orphaned(rec):
        return rec
    with locked(rec.id):
        current = load(rec.id)
        if not _orphaned(current):
            return current
        st = current.state
        state = replace(
            st,
            status="exited",
            pid=0,
            exit_code=EXIT_UNKNOWN if st.exit_code is None else st.exit_code,
            finished_at=st.finished_at or now(),
            error=st.error or "its processes died while no supervisor watched",
        )
        _write_json(current.dir / "state.json", asdict(state))
        return replace(current, state=state)


def mark_removing(cid: str) -> Record:
    """Mark a container "removing" under its lock, unless it runs (it may have been started
    since the caller looked): from then on nothing starts it again."""
    with locked(cid):
        rec = load(cid)
        if rec.running and not _orphaned(rec):
            raise ContainerError(
                f"cannot remove container {rec.name} ({rec.short_id}): it is running; "
                "stop it first, or use rm -f"
            )
        state = replace(rec.state, status="removing", pid=0)
        _write_json(rec.dir / "state.json", asdict(state))
        return replace(rec, state=state)


def list_records(all_states: bool = True) -> list[Record]:
    out = []
    for cid in all_ids():
        try:
            rec = refresh(load(cid))
        except NoSuchContainerError:
            continue  # removed meanwhile
        if all_states or rec.running:
            out.append(rec)
    return sorted(out, key=lambda r: r.config.get("created", ""), reverse=True)

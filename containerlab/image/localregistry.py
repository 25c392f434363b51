"""A private registry on this machine: the distribution registry bound to 127.0.0.1.

Pushing and pulling need a registry, and the lab talks to nothing outside this machine, so
it starts its own: ``docker-registry serve CONFIG`` (Debian's package of the CNCF
distribution registry, the one Docker Hub runs), with a config of its own. The packaged
config listens on every interface and turns on htpasswd authentication; this one listens on
a free port of 127.0.0.1 only, stores blobs under ``workdir/data`` and logs to
``workdir/registry.log``.

``with local_registry(workdir) as addr:`` yields ``"127.0.0.1:PORT"`` once the registry
answers ``GET /v2/``; leaving the block stops the process and waits for it (PID 1 of a
container or a lab VM does not always reap orphans, so nothing else would).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from containerlab.errors import RegistryError

#: Where Debian's ``docker-registry`` package puts the binary.
REGISTRY_BIN = "/usr/bin/docker-registry"
#: How long to wait for ``GET /v2/`` to answer after starting it.
START_TIMEOUT = 15.0
#: How long ``SIGTERM`` gets before ``SIGKILL`` when stopping it.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(addr: str) -> bool:
    """True when a registry API answers ``GET /v2/`` at ``addr`` (200, or 401 with auth)."""
    conn = http.client.HTTPConnection(addr, timeout=1)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


def config_text(addr: str, data_dir: Path) -> str:
    """The registry's config: filesystem storage in ``data_dir``, http on ``addr`` only."""
    return (
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )


def stop(proc: subprocess.Popen) -> None:
    """Terminate the registry (kill it if it lingers) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def _start(workdir: Path, binary: str, timeout: float) -> tuple[subprocess.Popen, str]:
    config = workdir / "config.yml"
    log_path = workdir / "registry.log"
    for _ in range(3):  # the free port can be taken between probe and bind: try another
        addr = f"127.0.0.1:{free_port()}"
        config.write_text(config_text(addr, workdir / "data"))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if answers(addr):
                    return proc, addr
                time.sleep(0.05)
        except BaseException:  # interrupted while waiting: do not leave it running
            stop(proc)
            raise
        stop(proc)
    tail = log_path.read_text(errors="replace")[-2000:].rstrip()
    raise RegistryError(
        f"the registry did not start (no answer on /v2/ within {timeout:.0f} s); "
        f"its log {log_path} ends with:\n{tail}"
    )


@contextlib.contextmanager
def local_registry(
    workdir: Path | str, *, binary: str = REGISTRY_BIN, timeout: float = START_TIMEOUT
) -> Iterator[str]:
    """Run a registry on 127.0.0.1 for the duration of the block; yields ``"127.0.0.1:PORT"``.

    ``workdir`` holds its config, its log and its storage (made if missing; left in place,
    so the caller decides whether the pushed images outlive the registry).
    """
    if not os.access(binary, os.X_OK):
        raise RegistryError(
            f"no registry binary at {binary}; install Debian's docker-registry package "
            "(scripts/setup.sh does)"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    proc, addr = _start(workdir, binary, timeout)
    try:
        yield addr
    finally:
        stop(proc)

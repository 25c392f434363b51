"""Fixtures for the tests: a private state root per test (the leak check is in ../conftest.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from containerlab.image.localregistry import answers

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "containerlab")


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the matplotlib figures a test drew (the viz tests draw dozens); a test that never
    imported pyplot does not import it here."""
    yield
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


@pytest.fixture(autouse=True)
def clab_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own CONTAINERLAB_ROOT, so no two tests share images or containers."""
    root = tmp_path_factory.mktemp("clab-root")
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(root))
    monkeypatch.delenv("CONTAINERLAB_RUN", raising=False)
    monkeypatch.delenv("CONTAINERLAB_EXPLAIN", raising=False)
    yield root
    remove_networks()
    shutil.rmtree(root, ignore_errors=True)


def remove_networks() -> None:
    """The networks a test's containers made (the default one, created on first use, above
    all): the bridges and rules are the host's, and the leak check wants them gone."""
    from containerlab.network import networks

    networks.prune(keep_default=False)


@pytest.fixture(scope="session")
def shared_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs built once for tests that only read it."""
    from containerlab import rootfs

    return rootfs.build_busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox")


def host_hostname() -> str:
    return os.uname().nodename


# --- a real distribution registry on 127.0.0.1 ----------------------------------------------
REGISTRY_BIN = "/usr/bin/docker-registry"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(workdir: Path, htpasswd: Path | None = None):
    """Start ``docker-registry serve`` on a free 127.0.0.1 port; returns (process, "host:port").

    Its own config: the packaged one listens on every interface and turns on htpasswd.
    The caller must ``stop_registry`` it (PID 1 here does not reap).
    """
    import subprocess
    import time

    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # the free port can be taken between probe and bind: try another
        addr = f"127.0.0.1:{_free_port()}"
        auth = (
            f"auth:\n  htpasswd:\n    realm: clab-test\n    path: {htpasswd}\n" if htpasswd else ""
        )
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {addr}\n" + auth
        )
        with open(workdir / "registry.log", "ab") as log:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if answers(addr):
                return proc, addr
            time.sleep(0.05)
        stop_registry(proc)
    tail = (workdir / "registry.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"docker-registry did not start; its log ends with:\n{tail}")


def stop_registry(proc) -> None:
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A real distribution registry for the whole session: yields ``"127.0.0.1:PORT"``."""
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed (scripts/setup.sh installs it)")
    proc, addr = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield addr
    finally:
        stop_registry(proc)


@pytest.fixture
def registry_factory(tmp_path: Path):
    """Start extra registries for one test (``start(htpasswd=path)`` for basic auth)."""
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed (scripts/setup.sh installs it)")
    procs = []

    def start(htpasswd: Path | None = None) -> str:
        proc, addr = start_registry(tmp_path / f"registry-{len(procs)}", htpasswd)
        procs.append(proc)
        return addr

    try:
        yield start
    finally:
        for proc in procs:
            stop_registry(proc)


# --- fixtures shared by several test files ------------------------------------------------
@pytest.fixture
def netns():
    """Make named network namespaces ``clab-t-XXXX``; kill what runs in them and delete them."""
    import subprocess
    import uuid

    made: list[str] = []

    def make() -> str:
        name = f"clab-t-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def term():
    """Start the CLI on a terminal (test_tty's ``Terminal``); killed and reaped, and its
    containers gone, at the end.

    A container of `run -it` is held by its supervisor, not by the CLI: killing the CLI
    leaves it running (as Docker does), so what a failed test leaves is removed here."""
    import subprocess

    from tests.test_tty import Terminal

    opened: list[Terminal] = []

    def start(*args: str, **kw) -> Terminal:
        t = Terminal(list(args), **kw)
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()
    ids = subprocess.run([CLI, "ps", "-aq"], capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run([CLI, "rm", "-f", *ids], capture_output=True, timeout=60)

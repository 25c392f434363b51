"""Fixtures for the tests: a private state root per test (the leak check is in ../conftest.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "containerlab")


@pytest.fixture(autouse=True)
def clab_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own CONTAINERLAB_ROOT, so no two tests share images or containers."""
    root = tmp_path_factory.mktemp("clab-root")
    monkeypatch.setenv("CONTAINERLAB_ROOT", str(root))
    monkeypatch.delenv("CONTAINERLAB_RUN", raising=False)
    monkeypatch.delenv("CONTAINERLAB_EXPLAIN", raising=False)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs built once for tests that only read it."""
    from containerlab import rootfs

    return rootfs.build_busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox")


def host_hostname() -> str:
    return os.uname().nodename

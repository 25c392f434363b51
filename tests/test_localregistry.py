"""The notebooks' private registry: a real docker-registry on 127.0.0.1, stopped and reaped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from containerlab.errors import RegistryError
from containerlab.image import base, localregistry, registry
from containerlab.image.store import Store

pytestmark = pytest.mark.skipif(
    not os.path.exists(localregistry.REGISTRY_BIN),
    reason="docker-registry is not installed (scripts/setup.sh installs it)",
)


def children() -> set[int]:
    """This process's direct children (a registry left running would be one)."""
    me, out = os.getpid(), set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                    out.add(int(entry))
        except (OSError, IndexError):
            pass
    return out


def test_serves_the_api_on_loopback_only_and_is_reaped(tmp_path: Path):
    before = children()
    with localregistry.local_registry(tmp_path / "reg") as addr:
        host, port = addr.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert localregistry.answers(addr)
        new = children() - before
        assert len(new) == 1
        (pid,) = new
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")[:-1]
        assert argv == [
            localregistry.REGISTRY_BIN.encode(),
            b"serve",
            str(tmp_path / "reg/config.yml").encode(),
        ]
        config = (tmp_path / "reg/config.yml").read_text()
        assert f"addr: {addr}\n" in config and "htpasswd" not in config
    assert children() == before  # stopped and reaped: not even a zombie
    assert not os.path.exists(f"/proc/{pid}")
    assert not localregistry.answers(addr)
    assert (tmp_path / "reg/registry.log").stat().st_size > 0


def test_a_push_and_pull_through_it(tmp_path: Path):
    store = Store(tmp_path / "store")
    digest = base.ensure_base_image(store)
    with localregistry.local_registry(tmp_path / "reg") as addr:
        assert registry.push(f"{addr}/lab/busybox:1", store, source="busybox") == digest
        fresh = Store(tmp_path / "fresh")
        assert registry.pull(f"{addr}/lab/busybox:1", fresh) == digest
    # The storage outlives the registry: the caller decides when to remove it.
    assert (tmp_path / "reg/data/docker/registry/v2/repositories/lab/busybox").is_dir()


def test_stopped_when_the_block_raises(tmp_path: Path):
    before = children()
    with pytest.raises(KeyError), localregistry.local_registry(tmp_path / "reg") as addr:
        raise KeyError(addr)
    assert children() == before


def test_a_missing_binary_is_explained(tmp_path: Path):
    with (
        pytest.raises(RegistryError, match="no registry binary at /nonexistent/registry"),
        localregistry.local_registry(tmp_path, binary="/nonexistent/registry"),
    ):
        pass


def test_a_registry_that_never_answers_is_stopped_and_its_log_shown(tmp_path: Path):
    fake = tmp_path / "fake-registry"
    fake.write_text("#!/bin/sh\necho 'listen: permission denied (pretend)'\nexec sleep 60\n")
    fake.chmod(0o755)
    before = children()
    with (
        pytest.raises(RegistryError, match=r"did not start(.|\n)*permission denied \(pretend\)"),
        localregistry.local_registry(tmp_path / "reg", binary=str(fake), timeout=0.3),
    ):
        pass
    assert children() == before  # all three attempts were killed and reaped


def test_a_registry_that_exits_at_once_is_reported(tmp_path: Path):
    fake = tmp_path / "fake-registry"
    fake.write_text("#!/bin/sh\necho 'configuration error: bad yaml (pretend)'\nexit 1\n")
    fake.chmod(0o755)
    with (
        pytest.raises(RegistryError, match="bad yaml"),
        localregistry.local_registry(tmp_path / "reg", binary=str(fake)),
    ):
        pass

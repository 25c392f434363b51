"""The root filesystem: the busybox tree, chroot's weakness, pivot_root's strength."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from containerlab import rootfs
from containerlab.errors import RootfsError


def _tree_digest(root: Path) -> str:
    """A digest of names, modes, link targets, contents and mtimes: equal trees, equal digest."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode:o} {int(st.st_mtime)}".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_busybox_is_static():
    assert rootfs._is_static_elf(rootfs.find_busybox())
    assert not rootfs._is_static_elf(Path("/bin/ls"))  # dynamically linked


def test_busybox_rootfs_has_a_shell_and_applets(shared_rootfs):
    assert (shared_rootfs / "bin/busybox").stat().st_mode & 0o111
    assert os.readlink(shared_rootfs / "bin/sh") == "/bin/busybox"
    assert os.readlink(shared_rootfs / "bin/ls") == "/bin/busybox"
    assert (shared_rootfs / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (shared_rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_busybox_rootfs_is_deterministic(tmp_path, shared_rootfs):
    again = rootfs.build_busybox_rootfs(tmp_path / "again")
    assert _tree_digest(again) == _tree_digest(shared_rootfs)


def test_chroot_breakout_escapes(shared_rootfs):
    result = rootfs.breakout(shared_rootfs, "chroot")
    assert result.escaped is True
    assert "work" in result.root_listing or "usr" in result.root_listing  # the host's /
    assert list((shared_rootfs / "tmp").iterdir()) == []  # scratch dir removed


def test_pivot_root_defeats_the_breakout(shared_rootfs):
    result = rootfs.breakout(shared_rootfs, "pivot_root")
    assert result.escaped is False
    assert set(result.root_listing) >= {"bin", "etc", "proc", "tmp"}  # still the container's /
    assert "work" not in result.root_listing


def test_breakout_of_a_missing_rootfs_is_a_clear_error(tmp_path):
    with pytest.raises(RootfsError, match="no root filesystem"):
        rootfs.breakout(tmp_path / "nothing")
    with pytest.raises(RootfsError, match="unknown confinement"):
        rootfs.breakout(tmp_path, "jail")


def test_mountinfo_parses_the_root_mount():
    mounts = rootfs.mountinfo()
    root = [m for m in mounts if m.mountpoint == "/"]
    assert root and root[0].fstype
    assert all(m.mount_id > 0 for m in mounts)
    proc = [m for m in mounts if m.mountpoint == "/proc"]
    assert proc and proc[0].fstype == "proc"

"""Layer tars both ways: round trips, whiteouts through a real overlayfs, hostile archives.

Every tar here is built by hand with ``tarfile``, so a test says exactly which bytes a
layer holds. Hostile layers aim at a canary file next to the destination: if extraction
ever escaped, the canary (or its directory) would change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from containerlab import rootfs
from containerlab.errors import LayerError
from containerlab.layertar import (
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    create_layer,
    extract_layer,
    is_overlay_opaque,
    is_overlay_whiteout,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, mount)")


# --- building tars by hand ------------------------------------------------------------------
def member(
    name: str,
    kind: str = "file",
    data: bytes = b"",
    *,
    mode: int | None = None,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_000_000,
    link: str = "",
    dev: tuple[int, int] = (0, 0),
    xattrs: dict[str, bytes] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    """One tar member: kind is file, dir, symlink, hardlink, chr, blk or fifo."""
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    ti = tarfile.TarInfo(name)
    ti.type = types[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime, ti.linkname = uid, gid, mtime, link
    ti.devmajor, ti.devminor = dev
    if kind == "file":
        ti.size = len(data)
    if xattrs:
        ti.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
    return ti, data


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


class ReadOnly:
    """A stream that can only be read, like a socket or an HTTP body: no seek, no tell."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def extract(data: bytes, dest: Path, **kw: str) -> object:
    return extract_layer(ReadOnly(data), dest, **kw)  # type: ignore[arg-type]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, tuple]:
    """Everything below ``root`` that a write could change, by relative path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            what: object = None
            if stat.S_ISREG(st_.st_mode):
                what = Path(p).read_bytes()
            elif stat.S_ISLNK(st_.st_mode):
                what = os.readlink(p)
            rel = os.path.relpath(p, root)
            out[rel] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_mtime_ns, st_.st_rdev, what)
    return out


class Arena:
    """A destination directory, and next to it a canary directory no layer may touch."""

    def __init__(self, base: Path) -> None:
        self.dest = base / "dest"
        self.outside = base / "outside"
        self.canary = self.outside / "canary"
        self.dest.mkdir(parents=True)
        (self.outside / "sub").mkdir(parents=True)
        self.canary.write_text("canary\n")
        os.utime(self.canary, (1, 1))
        self._before = tree(self.outside)
        self._base_before = sorted(os.listdir(base))
        self._base = base

    def assert_untouched(self) -> None:
        assert tree(self.outside) == self._before
        assert sorted(os.listdir(self._base)) == self._base_before


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return Arena(tmp_path)


@contextmanager
def overlay(merged: Path, lowers: list[Path], upper: Path | None = None) -> Iterator[Path]:
    """Mount an overlay in this process's mount namespace; always unmounted."""
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        work = upper.parent / (upper.name + "-work")
        work.mkdir()
        opts += f",upperdir={upper},workdir={work}"
    merged.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def listing(root: Path) -> dict[str, bytes | str]:
    """Relative path -> content (files) or kind, for comparing two views of a tree."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else p.stat().st_mode
        if p.is_dir():
            out[rel] = "dir"
    return out


# --- round trips ----------------------------------------------------------------------------
def test_round_trip_keeps_content_owner_mode_mtime_xattrs_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d/sub").mkdir(parents=True)
    (src / "d/file").write_bytes(b"hello\n" * 1000)
    os.chown(src / "d/file", 1234, 5678)
    os.chmod(src / "d/file", 0o4755)  # setuid is kept, as Docker keeps it
    os.setxattr(src / "d/file", "user.note", b"\x00\xffbinary")
    os.link(src / "d/file", src / "d/sub/again")
    os.symlink("/nowhere/at/all", src / "d/link")
    os.lchown(src / "d/link", 42, 43)
    os.mkfifo(src / "d/pipe", 0o640)
    os.mknod(src / "d/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(src / "d/sub", 0o2750)
    os.setxattr(src / "d/sub", "user.dir", b"yes")
    for p in (src / "d/file", src / "d/pipe", src / "d/null", src / "d/sub", src / "d"):
        os.utime(p, (7, 1_234_567), follow_symlinks=False)
    os.utime(src / "d/link", (7, 77), follow_symlinks=False)

    buf = io.BytesIO()
    made = create_layer(src, buf)
    data = buf.getvalue()
    assert made.size == len(data) and made.digest == made.diff_id == sha(data)

    stats = extract(data, tmp_path / "out")
    out = tmp_path / "out"
    assert tree(out) == {k: v for k, v in tree(src).items()}
    assert os.stat(out / "d/file").st_ino == os.stat(out / "d/sub/again").st_ino
    assert os.getxattr(out / "d/file", "user.note") == b"\x00\xffbinary"
    assert os.getxattr(out / "d/sub", "user.dir") == b"yes"
    assert stat.S_IMODE(os.stat(out / "d/file").st_mode) == 0o4755
    assert stats.files == 1 and stats.hardlinks == 1 and stats.symlinks == 1
    assert stats.dirs == 2 and stats.devices == 2 and stats.entries == 7
    assert stats.diff_id == stats.digest == made.diff_id and stats.size == len(data)
    # Extract, create again: the same bytes.
    again = io.BytesIO()
    assert create_layer(out, again) == made and again.getvalue() == data


def test_gzip_layer_digests_and_auto_detection(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    plain, packed = io.BytesIO(), io.BytesIO()
    p = create_layer(src, plain)
    g = create_layer(src, packed, gzip=True)
    assert g.diff_id == p.diff_id == sha(plain.getvalue())
    assert g.digest == sha(packed.getvalue()) and g.size == len(packed.getvalue())
    assert gzip.decompress(packed.getvalue()) == plain.getvalue()
    for kw in ({}, {"compression": "gzip"}):
        dest = tmp_path / f"out{len(kw)}"
        stats = extract(packed.getvalue(), dest, **kw)
        assert (stats.diff_id, stats.digest, stats.size) == (g.diff_id, g.digest, g.size)
        assert (dest / "f").read_bytes() == (src / "f").read_bytes()
    stats = extract(plain.getvalue(), tmp_path / "out-none", compression="none")
    assert stats.digest == stats.diff_id == p.diff_id


def test_digest_covers_trailing_padding(tmp_path: Path) -> None:
    data = tar_of(member("f", data=b"x")) + b"\0" * 4096
    stats = extract(data, tmp_path / "d")
    assert stats.size == len(data) and stats.digest == sha(data)


def test_create_is_deterministic_for_two_busybox_trees(tmp_path: Path) -> None:
    a = rootfs.build_busybox_rootfs(tmp_path / "a")
    b = rootfs.build_busybox_rootfs(tmp_path / "b")
    for gz in (False, True):
        ba, bb = io.BytesIO(), io.BytesIO()
        assert create_layer(a, ba, gzip=gz) == create_layer(b, bb, gzip=gz)
        assert ba.getvalue() == bb.getvalue()
    with tarfile.open(fileobj=io.BytesIO(ba.getvalue())) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "bin" and "bin/busybox" in names
    assert all(m.uname == m.gname == "" for m in members)
    assert all("atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in members)


def test_mtime_clamps_every_entry(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/new").write_text("n")
    (src / "d/old").write_text("o")
    os.utime(src / "d/old", (5, 5))
    buf = io.BytesIO()
    create_layer(src, buf, mtime=1000)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        times = {m.name: m.mtime for m in tar.getmembers()}
    assert times == {"d": 1000, "d/new": 1000, "d/old": 5}


def test_directory_mtime_set_after_its_content(tmp_path: Path) -> None:
    data = tar_of(
        member("d", "dir", mtime=1000, mode=0o700, uid=7, gid=8),
        member("d/f", data=b"x", mtime=2000, uid=9, gid=10, mode=0o2711),
        member("d/s", "symlink", link="../../../etc", mtime=3000, uid=11),
    )
    dest = tmp_path / "d0"
    extract(data, dest)
    d, f, s = (os.lstat(dest / n) for n in ("d", "d/f", "d/s"))
    assert (d.st_mtime, d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (1000, 7, 8, 0o700)
    assert (f.st_mtime, f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (2000, 9, 10, 0o2711)
    assert (s.st_mtime, s.st_uid) == (3000, 11) and os.readlink(dest / "d/s") == "../../../etc"


def test_xattrs_kept_and_dropped(tmp_path: Path) -> None:
    # A file capability: VFS_CAP_REVISION_2, effective, permitted cap_net_raw (13).
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    data = tar_of(
        member(
            "ping",
            data=b"#!",
            mode=0o755,
            xattrs={
                "user.a": b"1",
                "security.capability": cap,
                "trusted.overlay.redirect": b"/etc",
                "trusted.overlay.opaque": b"y",
            },
        ),
        member("d", "dir", xattrs={OPAQUE_XATTR: b"y"}),
    )
    dest = tmp_path / "x"
    extract(data, dest)
    assert os.getxattr(dest / "ping", "user.a") == b"1"
    assert os.getxattr(dest / "ping", "security.capability") == cap
    names = os.listxattr(dest / "ping")
    assert "trusted.overlay.redirect" not in names and OPAQUE_XATTR not in names
    # A layer cannot make a directory opaque by carrying overlayfs's own xattr.
    assert not is_overlay_opaque(dest / "d")


def test_devices_keep_and_skip(tmp_path: Path) -> None:
    data = tar_of(
        member("dev", "dir"),
        member("dev/null", "chr", dev=(1, 3), mode=0o666),
        member("dev/loop9", "blk", dev=(7, 9), mode=0o660),
        member("dev/null2", "hardlink", link="dev/null"),
        member("dev/fifo", "fifo", mode=0o620),
    )
    kept = tmp_path / "keep"
    stats = extract(data, kept)
    st_ = os.lstat(kept / "dev/null")
    assert stat.S_ISCHR(st_.st_mode) and (os.major(st_.st_rdev), os.minor(st_.st_rdev)) == (1, 3)
    assert stat.S_IMODE(st_.st_mode) == 0o666 and st_.st_nlink == 2
    assert stat.S_ISBLK(os.lstat(kept / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.lstat(kept / "dev/fifo").st_mode)
    assert stats.devices == 3 and stats.hardlinks == 1
    skipped = tmp_path / "skip"
    stats = extract(data, skipped, devices="skip")
    assert sorted(os.listdir(skipped / "dev")) == ["fifo"]
    assert stats.devices == 3 and stats.entries == 5


def test_apply_replaces_what_lower_layers_put_there(tmp_path: Path) -> None:
    dest = tmp_path / "flat"
    extract(tar_of(member("a", "dir"), member("a/x", data=b"1"), member("f", data=b"f")), dest)
    # A file over a directory, a directory over a file: replaced, never merged.
    extract(tar_of(member("a", data=b"now a file"), member("f", "dir")), dest, whiteouts="apply")
    assert (dest / "a").read_bytes() == b"now a file" and (dest / "f").is_dir()


# --- whiteouts ------------------------------------------------------------------------------
def test_overlay_whiteouts_round_trip_through_a_real_overlay(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in ("d", "o/sub"):
        (lower / d).mkdir(parents=True)
    for f in ("keep", "gone", "d/x", "o/old", "o/sub/deep"):
        (lower / f).write_text(f)
    upper.mkdir()
    with overlay(tmp_path / "merged", [lower], upper) as m:
        (m / "gone").unlink()
        subprocess.run(["rm", "-r", str(m / "d"), str(m / "o")], check=True)
        (m / "o").mkdir()
        (m / "o/new").write_text("new")
    assert is_overlay_whiteout(upper / "gone") and is_overlay_whiteout(upper / "d")
    assert is_overlay_opaque(upper / "o") and not is_overlay_opaque(upper / "keep")

    buf = io.BytesIO()
    made = create_layer(upper, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
    assert names == [".wh.d", ".wh.gone", "o", f"o/{OPAQUE_MARKER}", "o/new"]

    layer = tmp_path / "layer"
    stats = extract(buf.getvalue(), layer)
    assert (stats.whiteouts, stats.opaque_dirs) == (2, 1)
    assert is_overlay_whiteout(layer / "gone") and is_overlay_whiteout(layer / "d")
    assert is_overlay_opaque(layer / "o")
    assert create_layer(layer, io.BytesIO()) == made
    # Stacked as a lower layer again, it still hides what it deleted.
    with overlay(tmp_path / "view", [layer, lower]) as v:
        assert sorted(os.listdir(v)) == ["keep", "o"]
        assert sorted(os.listdir(v / "o")) == ["new"]


def test_apply_flattens_like_overlay_stacks(tmp_path: Path) -> None:
    base = tar_of(
        member("a", data=b"a"),
        member("d", "dir"),
        member("d/x", data=b"x"),
        member("o", "dir"),
        member("o/old", data=b"old"),
        member("o/sub", "dir"),
        member("o/sub/deep", data=b"deep"),
        member("w", "dir"),
        member("w/tree/leaf", data=b"leaf"),
    )
    # The opaque marker after this layer's own entries of o/: those must survive it.
    top = tar_of(
        member(".wh.a"),
        member("d/y", data=b"y"),
        member("o", "dir"),
        member("o/new", data=b"new"),
        member("o/sub", "dir"),
        member("o/sub/keep", data=b"keep"),
        member(f"o/{OPAQUE_MARKER}"),
        member(f"p/{OPAQUE_MARKER}"),
        member("p/q", data=b"q"),
        member("w/.wh.tree"),
        member(".wh.never-there"),
        member(".wh..wh.aufs"),  # aufs bookkeeping: skipped, as Docker skips it
    )
    flat = tmp_path / "flat"
    extract(base, flat, whiteouts="apply")
    stats = extract(top, flat, whiteouts="apply")
    assert (stats.whiteouts, stats.opaque_dirs) == (3, 2)
    expected = {
        "d": "dir",
        "d/x": b"x",
        "d/y": b"y",
        "o": "dir",
        "o/new": b"new",
        "o/sub": "dir",
        "o/sub/keep": b"keep",
        "p": "dir",
        "p/q": b"q",
        "w": "dir",
    }
    assert listing(flat) == expected
    # The same two layers as overlayfs stacks them: the same view.
    lo, hi = tmp_path / "lo", tmp_path / "hi"
    extract(base, lo)
    extract(top, hi)
    with overlay(tmp_path / "view", [hi, lo]) as v:
        assert listing(v) == expected


def test_opaque_marker_first_applies_before_the_layer(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    extract(tar_of(member("o/old", data=b"old")), flat, whiteouts="apply")
    extract(
        tar_of(member(f"o/{OPAQUE_MARKER}"), member("o/new", data=b"new")),
        flat,
        whiteouts="apply",
    )
    assert listing(flat) == {"o": "dir", "o/new": b"new"}


# --- hostile layers -------------------------------------------------------------------------
def _hostile(outside: Path) -> dict[str, tuple[bytes, str, dict[str, str]]]:
    """name -> (layer bytes, expected message part, extract options)."""
    out = str(outside)
    big = "a" * 300
    cases = {
        "dotdot": (tar_of(member("../outside/canary", data=b"pwned")), "escapes the layer root"),
        "dotdot-deep": (
            tar_of(member("x/../../outside/canary", data=b"pwned")),
            "escapes the layer root",
        ),
        "absolute": (tar_of(member(f"{out}/canary", data=b"pwned")), "absolute path"),
        "symlink-then-file": (
            tar_of(member("a", "symlink", link=out), member("a/canary", data=b"pwned")),
            "goes through 'a', which is a symlink",
        ),
        "symlink-then-dir": (
            tar_of(member("a", "symlink", link=out), member("a/new", "dir")),
            "which is a symlink",
        ),
        "relative-symlink-then-file": (
            tar_of(member("a", "symlink", link="../outside"), member("a/new", data=b"x")),
            "which is a symlink",
        ),
        "symlink-then-hardlink": (
            tar_of(member("a", "symlink", link=out), member("x", "hardlink", link="a/canary")),
            "not an earlier file of this layer",
        ),
        "hardlink-absolute": (
            tar_of(member("passwd", "hardlink", link="/etc/passwd")),
            "absolute path",
        ),
        "hardlink-dotdot": (
            tar_of(member("c", "hardlink", link="../outside/canary")),
            "escapes the layer root",
        ),
        "hardlink-to-dir": (
            tar_of(member("d", "dir"), member("x", "hardlink", link="d")),
            "not an earlier file",
        ),
        "hardlink-forward": (
            tar_of(member("x", "hardlink", link="f"), member("f", data=b"f")),
            "not an earlier file",
        ),
        "whiteout-dot-name": (tar_of(member(".wh..")), "not a file name"),
        "whiteout-dotdot-name": (tar_of(member("sub/.wh...")), "whites out '..'"),
        "whiteout-dotdot-parent": (tar_of(member("../.wh.canary")), "escapes the layer root"),
        "whiteout-through-symlink": (
            tar_of(member("a", "symlink", link=out), member("a/.wh.canary")),
            "which is a symlink",
        ),
        "opaque-through-symlink": (
            tar_of(member("a", "symlink", link=out), member(f"a/{OPAQUE_MARKER}")),
            "which is a symlink",
        ),
        "inside-a-whiteout": (tar_of(member(".wh.x/y", data=b"y")), "inside a whiteout"),
        "duplicate": (tar_of(member("f", data=b"1"), member("f", data=b"2")), "appears twice"),
        "symlink-over-dir": (
            tar_of(member("d", "dir"), member("d", "symlink", link=out)),
            "appears twice",
        ),
        "whiteout-and-entry": (
            tar_of(member("f", data=b"1"), member(".wh.f")),
            "which the same layer also names",
        ),
        "entry-under-whiteout": (
            tar_of(member(".wh.d"), member("d/f", data=b"1")),
            "whites out",
        ),
        "long-component": (tar_of(member(big, data=b"x")), "longer than 255 bytes"),
        "long-path": (tar_of(member("/".join(["b" * 200] * 30), data=b"x")), "longer than 4096"),
        "bad-owner": (tar_of(member("f", uid=-1)), "invalid owner"),
        "root-not-dir": (tar_of(member("./", "symlink", link=out)), "layer root"),
    }
    hostile = {k: (v[0], v[1], {}) for k, v in cases.items()}
    # The same escapes where the layer deletes instead of writes.
    for k in ("whiteout-through-symlink", "opaque-through-symlink", "whiteout-dotdot-parent"):
        data, msg, _ = hostile[k]
        hostile[k + "-apply"] = (data, msg, {"whiteouts": "apply"})
    return hostile


HOSTILE_NAMES = sorted(_hostile(Path("/x")))


@pytest.mark.parametrize("case", HOSTILE_NAMES)
def test_hostile_layer_is_refused_and_nothing_outside_changes(arena: Arena, case: str) -> None:
    data, msg, kw = _hostile(arena.outside)[case]
    with pytest.raises(LayerError) as err:
        extract(data, arena.dest, **kw)
    text = str(err.value)
    assert msg in text, text
    assert text[0].islower(), text
    arena.assert_untouched()


def test_apply_refuses_a_lower_layers_symlink_as_a_parent(arena: Arena) -> None:
    # A symlink an earlier layer left in a flattened rootfs is not followed either.
    extract(tar_of(member("etc", "symlink", link=str(arena.outside))), arena.dest)
    for layer in (
        tar_of(member("etc/canary", data=b"pwned")),
        tar_of(member("etc/.wh.canary")),
        tar_of(member(f"etc/{OPAQUE_MARKER}")),
    ):
        with pytest.raises(LayerError, match="which is a symlink"):
            extract(layer, arena.dest, whiteouts="apply")
    arena.assert_untouched()


def test_symlink_whited_out_is_removed_not_followed(arena: Arena) -> None:
    extract(tar_of(member("s", "symlink", link=str(arena.outside))), arena.dest)
    extract(tar_of(member(".wh.s")), arena.dest, whiteouts="apply")
    assert os.listdir(arena.dest) == []
    arena.assert_untouched()


def test_device_skipped_in_skip_mode(arena: Arena) -> None:
    data = tar_of(member("sda", "blk", dev=(8, 0)), member("mem", "chr", dev=(1, 1)))
    stats = extract(data, arena.dest, devices="skip")
    assert stats.devices == 2 and os.listdir(arena.dest) == []
    arena.assert_untouched()


@pytest.mark.parametrize("cut", [100, 512 + 3, 1024, 1536, 1600, 2048])
def test_truncated_tar_is_refused(tmp_path: Path, cut: int) -> None:
    data = tar_of(member("a", data=b"x" * 600), member("b", data=b"y" * 10))
    with pytest.raises(LayerError, match=r"truncated|not a valid"):
        extract(data[:cut], tmp_path / "d")


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(tar_of(member("a", data=os.urandom(5000))))
    with pytest.raises(LayerError, match="not a valid gzip-compressed tar"):
        extract(data[: len(data) // 2], tmp_path / "d")


def test_garbage_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    one = tar_of(member("a", data=b"x"))
    data = one[:1024] + os.urandom(512) + one[1024:]
    with pytest.raises(LayerError, match="invalid tar header at byte 1024"):
        extract(data, tmp_path / "d")


@pytest.mark.parametrize(
    ("data", "kw", "msg"),
    [
        (b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10, {}, "not a valid gzip-compressed tar"),
        (b"plain text, not a tar" * 40, {}, "not a valid tar"),
        (b"", {}, "not a valid tar"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 100, {}, "zstd layers are not supported yet"),
        (b"", {"compression": "zstd"}, "zstd layers are not supported yet"),
        (b"x", {"compression": "lz4"}, "unknown layer compression 'lz4'"),
        (b"x", {"whiteouts": "aufs"}, "unknown whiteout mode"),
        (b"x", {"devices": "maybe"}, "unknown devices mode"),
    ],
)
def test_not_a_layer(tmp_path: Path, data: bytes, kw: dict, msg: str) -> None:
    with pytest.raises(LayerError, match=msg):
        extract(data, tmp_path / "d", **kw)


def test_plain_tar_called_gzip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not a valid gzip-compressed tar"):
        extract(tar_of(member("a")), tmp_path / "d", compression="gzip")


def test_create_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="is not a directory"):
        create_layer(tmp_path / "nope", io.BytesIO())


# --- property: whatever the names, nothing is written outside -------------------------------
_COMPONENTS = st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..", OPAQUE_MARKER, "c"])
_NAMES = st.lists(_COMPONENTS, min_size=1, max_size=4).map("/".join)
_MEMBERS = st.lists(
    st.tuples(
        st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
        _NAMES,
        st.sampled_from(["OUT", "OUT/canary", "a", "a/b", "../outside", "/etc"]),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(members=_MEMBERS, mode=st.sampled_from(["overlay", "apply"]))
def test_random_layers_never_write_outside(tmp_path: Path, members: list, mode: str) -> None:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        arena = Arena(base)
        built = []
        for kind, name, target, absolute in members:
            link = target.replace("OUT", str(arena.outside))
            if kind == "symlink" and absolute:
                link = str(arena.outside)
            built.append(
                member(("/" if absolute and kind == "file" else "") + name, kind, link=link)
            )
        try:
            extract(tar_of(*built), arena.dest, whiteouts=mode)
        except LayerError:
            pass
        arena.assert_untouched()
    finally:
        shutil.rmtree(base)

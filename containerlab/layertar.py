"""An image layer as a tar stream, both ways, safely.

A layer is a tar of the files one build step added or changed, plus *whiteouts* for what it
deleted: an empty file ``.wh.NAME`` deletes ``NAME`` from the layers below, and
``dir/.wh..wh..opq`` hides everything the layers below put in ``dir`` (OCI image-spec,
``layer.md``). Overlayfs says the same thing its own way: a character device 0/0 ``NAME``
in an upper directory hides ``NAME``, and the xattr ``trusted.overlay.opaque=y`` makes a
directory opaque. :func:`create_layer` turns an overlay upper directory into a layer tar,
:func:`extract_layer` turns a layer tar back into an overlay directory (``whiteouts="overlay"``)
or applies it onto a flattened root filesystem (``whiteouts="apply"``).

A layer comes from the network, so extraction trusts nothing in it. Whatever the archive
says, nothing is created, changed or deleted outside the destination:

- every path is relative: an absolute name or any ``..`` component is refused (Docker strips
  a leading ``/`` instead; no tool that makes layers writes one, so here it is an error);
- parents are opened one component at a time with ``O_NOFOLLOW`` from a file descriptor of
  the destination, so a symlink in the layer (``a -> /etc``) is never followed: an entry
  ``a/passwd`` is refused instead of writing ``/etc/passwd``;
- a hardlink must point at an earlier non-directory entry of the same layer;
- a whiteout names one plain entry of an existing directory, found the same way.

Symlinks themselves may point anywhere: they are resolved later, inside the container.

Kept as Docker keeps them: numeric owners, modes *including setuid/setgid* (images rely on
them, e.g. ``su``, ``passwd``; the container's capability set and ``no_new_privs`` are what
limit them), mtimes, device nodes, and the xattrs ``user.*``, ``security.capability``
(file capabilities, e.g. ``ping``'s ``cap_net_raw``: like setuid, bounded by the container)
and POSIX ACLs. Other xattrs are dropped: ``trusted.*`` would let a layer forge overlayfs
metadata (``trusted.overlay.redirect``, ``opaque``, ``metacopy``), and ``security.selinux``
labels belong to the host's policy.
"""

from __future__ import annotations

import errno
import gzip as _gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from containerlab.errors import LayerError

_T = TypeVar("_T")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
# tarfile's stream buffer: it slices the whole buffer on every small read or write, so a
# large one makes each 512-byte header cost a large copy; 64 KiB measured fastest here.
_TAR_BUF = 64 << 10
_GZIP_LEVEL = 6  # fixed: another level gives other bytes, so another digest
_NAME_MAX = 255
_PATH_MAX = 4096
_PAX_XATTR = "SCHILY.xattr."
# xattrs a layer may carry; everything else is dropped (see the module docstring).
_XATTRS_KEPT = frozenset(
    {"security.capability", "system.posix_acl_access", "system.posix_acl_default"}
)
# setxattr errors that mean "this filesystem cannot hold it": skipped, as Docker does.
_XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})
_MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "leave unchanged" to chown(2)

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class LayerDigests:
    """What names a layer blob, as a manifest and an image config record it."""

    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream (the image config's rootfs)
    digest: str  # "sha256:<hex>" of the bytes as stored, compressed or not (the manifest's)
    size: int  # size in bytes as stored


@dataclass(frozen=True)
class ExtractStats:
    """What one extraction did, counted by kind of entry, and the digests of what it read."""

    entries: int  # tar entries read, of every kind
    files: int  # regular files written
    dirs: int  # directory entries (not the parents made for entries without one)
    symlinks: int  # symbolic links
    hardlinks: int  # hard links
    whiteouts: int  # ``.wh.NAME`` entries
    opaque_dirs: int  # ``.wh..wh..opq`` entries
    devices: int  # character and block devices and fifos, made or skipped
    diff_id: str  # "sha256:<hex>" of the uncompressed stream actually read
    digest: str  # "sha256:<hex>" of the raw stream as read (== diff_id when not compressed)
    size: int  # raw bytes read


# --- hashing streams ------------------------------------------------------------------------
class _HashingReader:
    """Reads through to ``raw``, hashing and counting every byte; remembers the last few."""

    def __init__(self, raw: BinaryIO, keep: int = 0) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self._keep = keep
        self._recent: deque[tuple[int, bytes]] = deque()
        self._kept = 0

    def read(self, n: int = _CHUNK) -> bytes:
        data = self._raw.read(_CHUNK if n is None or n < 0 else n)
        if data:
            self.sha.update(data)
            if self._keep:
                self._recent.append((self.size, data))
                self._kept += len(data)
                while self._kept - len(self._recent[0][1]) >= self._keep:
                    self._kept -= len(self._recent.popleft()[1])
            self.size += len(data)
        return data

    def window(self, start: int, n: int) -> bytes:
        """Bytes ``start:start+n`` of the stream, if still remembered (fewer at its end)."""
        out = bytearray()
        for at, data in self._recent:
            lo, hi = max(start, at), min(start + n, at + len(data))
            if lo < hi:
                out += data[lo - at : hi - at]
        return bytes(out)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class _Prefixed:
    """``head`` (bytes already read to sniff the format), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: _HashingReader) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = _CHUNK) -> bytes:
        if self._head:
            n = len(self._head) if n is None or n < 0 else n
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._rest.read(n)


class _HashingWriter:
    """Writes through to ``out``, hashing and counting every byte."""

    def __init__(self, out: BinaryIO | _gzip.GzipFile) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


# --- names ----------------------------------------------------------------------------------
def _show(name: str) -> str:
    """A member name for a message: quoted, and cut short if it is huge."""
    return repr(name if len(name) <= 120 else name[:100] + "...")


def _refuse(name: str, why: str) -> LayerError:
    return LayerError(f"layer entry {_show(name)} {why}; refusing the layer")


def _parts(name: str, label: str | None = None) -> tuple[str, ...]:
    """The components of a member name, relative to the layer root, or a LayerError.

    ``label`` names what is checked in messages (default: ``layer entry 'NAME'``).
    """
    label = label or f"layer entry {_show(name)}"

    def refuse(why: str) -> LayerError:
        return LayerError(f"{label} {why}; refusing the layer")

    if "\0" in name:
        raise refuse("contains a NUL byte")
    if name.startswith("/"):
        # Docker strips the slash; we refuse: no layer-making tool writes one.
        raise refuse("is an absolute path (layers hold paths relative to the root)")
    if len(os.fsencode(name)) > _PATH_MAX:
        raise refuse(f"is longer than {_PATH_MAX} bytes")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise refuse("escapes the layer root ('..')")
    if any(len(os.fsencode(p)) > _NAME_MAX for p in parts):
        raise refuse(f"has a component longer than {_NAME_MAX} bytes")
    return parts


def _xattrs_of(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """The PAX ``SCHILY.xattr.*`` records of a member that a layer may carry."""
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(_PAX_XATTR):
            name = key[len(_PAX_XATTR) :]
            if name.startswith("user.") or name in _XATTRS_KEPT:
                # Values are raw bytes; tarfile decoded them with surrogateescape.
                out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _set_xattrs(target: int | str, items: list[tuple[str, bytes]]) -> None:
    for name, value in items:
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _XATTR_UNSUPPORTED:
                raise


# --- extraction -----------------------------------------------------------------------------
class _Extractor:
    """Applies tar members one by one under a directory file descriptor."""

    def __init__(self, root_fd: int, whiteouts: str, devices: str) -> None:
        self.root = root_fd
        self.overlay = whiteouts == "overlay"
        self.skip_devices = devices == "skip"
        # The directory last resolved, as (component, O_PATH fd) from the root down: tar
        # members come grouped by directory, so most lookups reuse it. Removals only ever
        # happen below its tip, so it never holds a directory that was deleted.
        self.chain: list[tuple[str, int]] = []
        self.seen: set[str] = set()  # paths this layer created
        self.ancestors: set[str] = set()  # and their parent directories
        self.whited: set[str] = set()  # paths this layer whites out
        self.opaqued: set[str] = set()
        self.linkable: set[str] = set()  # non-directories of this layer (hardlink targets)
        self.skipped: set[str] = set()  # devices not made (devices="skip")
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.counts = dict.fromkeys(
            (
                "entries",
                "files",
                "dirs",
                "symlinks",
                "hardlinks",
                "whiteouts",
                "opaque_dirs",
                "devices",
            ),
            0,
        )

    def close(self) -> None:
        for _, fd in self.chain:
            os.close(fd)
        self.chain.clear()

    # -- walking, never following a symlink --
    def _dir(self, parts: tuple[str, ...], entry: str, create: bool) -> int | None:
        """An O_PATH fd of directory ``parts`` below the root (made if ``create``), or None."""
        n = 0
        while n < len(self.chain) and n < len(parts) and self.chain[n][0] == parts[n]:
            n += 1
        for _, fd in self.chain[n:]:
            os.close(fd)
        del self.chain[n:]
        fd = self.chain[-1][1] if self.chain else self.root
        for i in range(n, len(parts)):
            name = parts[i]
            try:
                fd = os.open(name, _DIR_PATH, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=fd)
                os.chmod(name, 0o755, dir_fd=fd)  # the umask may have taken bits away
                fd = os.open(name, _DIR_PATH, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise _refuse(
                    entry, f"goes through {'/'.join(parts[: i + 1])!r}, which is {what}"
                ) from None
            self.chain.append((name, fd))
        return fd

    def _mkdirs(self, parts: tuple[str, ...], entry: str) -> int:
        """Like ``_dir``, making what is missing (with mode 0755, as Docker does)."""
        fd = self._dir(parts, entry, create=True)
        if fd is None:  # cannot happen with create=True; keeps the type honest
            raise LayerError(f"layer entry {_show(entry)}: its directory vanished")
        return fd

    def _remove(self, parent: int, name: str) -> None:
        """Delete ``name`` (a whole tree if a directory) from directory ``parent``."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            # rmtree with dir_fd walks by file descriptors and never follows a symlink.
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    def _create(self, parent: int, name: str, make: Callable[[], _T]) -> _T:
        """Run ``make()``; if ``name`` exists, remove it first (a layer replaces, never merges)."""
        try:
            return make()
        except FileExistsError:
            self._remove(parent, name)
            return make()

    # -- bookkeeping --
    def _claim(self, parts: tuple[str, ...], entry: str) -> str:
        path = "/".join(parts)
        if path in self.seen:
            raise _refuse(entry, "appears twice in the layer")
        self._check_not_whited(parts, entry)
        self.seen.add(path)
        for i in range(len(parts)):
            self.ancestors.add("/".join(parts[:i]))
        return path

    def _check_not_whited(self, parts: tuple[str, ...], entry: str) -> None:
        if self.whited:
            for i in range(1, len(parts) + 1):
                if "/".join(parts[:i]) in self.whited:
                    raise _refuse(entry, "lies under a path the same layer whites out")

    # -- one member --
    def add(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.counts["entries"] += 1
        parts = _parts(m.name)
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            raise _refuse(m.name, "lies inside a whiteout")
        base = parts[-1] if parts else ""
        if base == OPAQUE_MARKER:
            self._opaque(parts[:-1], m)
        elif base.startswith(".wh..wh."):
            pass  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): Docker skips it too
        elif base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m)
        else:
            self._entry(tar, parts, m)

    def _opaque(self, dparts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        dpath = "/".join(dparts)
        if dpath in self.opaqued:
            raise _refuse(m.name, "appears twice in the layer")
        self._check_not_whited(dparts, m.name)
        self.opaqued.add(dpath)
        fd = self._mkdirs(dparts, m.name)
        if self.overlay:
            # An O_PATH fd cannot take an xattr; its /proc/self/fd link reaches the same inode.
            os.setxattr(f"/proc/self/fd/{fd}", OPAQUE_XATTR, b"y")
        else:
            self._prune(fd, dpath)
        self.counts["opaque_dirs"] += 1

    def _prune(self, dir_fd: int, prefix: str) -> None:
        """Delete what the layers below put in a directory; keep what this layer made.

        The OCI spec: an opaque whiteout applies first, wherever it sits in the tar, and
        never hides entries of its own layer.
        """
        with os.scandir(f"/proc/self/fd/{dir_fd}") as it:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in children:
            rel = f"{prefix}/{name}" if prefix else name
            if rel in self.seen or rel in self.ancestors:
                if is_dir:
                    sub = os.open(name, _DIR_PATH, dir_fd=dir_fd)
                    try:
                        self._prune(sub, rel)
                    finally:
                        os.close(sub)
            else:
                self._remove(dir_fd, name)

    def _whiteout(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        name = parts[-1][len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise _refuse(m.name, f"whites out {name!r}, which is not a file name")
        target = (*parts[:-1], name)
        tpath = "/".join(target)
        if tpath in self.seen or tpath in self.ancestors or tpath in self.whited:
            raise _refuse(m.name, f"whites out {tpath!r}, which the same layer also names")
        self._check_not_whited(parts[:-1], m.name)
        self.whited.add(tpath)
        self.counts["whiteouts"] += 1
        parent = self._dir(parts[:-1], m.name, create=self.overlay)
        if parent is None:
            return  # apply: the directory is not there, so neither is what it would hide
        self._remove(parent, name)
        if self.overlay:
            os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent)
            self._owner_and_time(parent, name, m)

    def _owner_and_time(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        os.chown(name, _id(m.uid, m), _id(m.gid, m), dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(_ns(m),) * 2, dir_fd=parent, follow_symlinks=False)

    def _entry(self, tar: tarfile.TarFile, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        path = self._claim(parts, m.name)
        mode = stat.S_IMODE(m.mode)
        uid, gid, ns = _id(m.uid, m), _id(m.gid, m), _ns(m)
        if not parts:
            if not m.isdir():
                raise _refuse(m.name, "is the layer root but not a directory")
            os.fchown(self.root, uid, gid)
            _set_xattrs(self.root, _xattrs_of(m))
            os.fchmod(self.root, mode)
            self.dir_times.append(((), ns))
            self.counts["dirs"] += 1
            return
        if m.islnk():
            self._hardlink(parts, path, m)
            return
        if m.ischr() or m.isblk():
            self.linkable.add(path)
            self.counts["devices"] += 1
            if self.skip_devices:
                self.skipped.add(path)
                return
        name = parts[-1]
        parent = self._mkdirs(parts[:-1], m.name)
        if m.isdir():
            self._directory(parent, name, m, mode, uid, gid)
            self.dir_times.append((parts, ns))
            self.counts["dirs"] += 1
            return
        self.linkable.add(path)
        if m.isreg():
            fd = self._create(parent, name, lambda: os.open(name, _NEW_FILE, 0o600, dir_fd=parent))
            try:
                src = tar.extractfile(m)
                while src is not None and (chunk := src.read(_CHUNK)):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                # chown clears setuid bits and file capabilities: chown, then xattrs, then mode.
                os.fchown(fd, uid, gid)
                _set_xattrs(fd, _xattrs_of(m))
                os.fchmod(fd, mode)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
            self.counts["files"] += 1
            return
        if m.issym():
            target = m.linkname
            if "\0" in target or not target or len(os.fsencode(target)) >= _PATH_MAX:
                raise _refuse(m.name, "has an empty or invalid symlink target")
            self._create(parent, name, lambda: os.symlink(target, name, dir_fd=parent))
            self.counts["symlinks"] += 1
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
            self._create(parent, name, lambda: os.mknod(name, kind | 0o600, dev, dir_fd=parent))
        elif m.isfifo():
            self._create(parent, name, lambda: os.mkfifo(name, 0o600, dir_fd=parent))
            self.counts["devices"] += 1
        else:
            raise _refuse(m.name, f"has a tar type this runtime does not handle ({m.type!r})")
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        # Not opened: opening a device or a fifo would act on it. The parent fd's /proc
        # link is a path that cannot be swapped; the last component is not followed.
        _set_xattrs(f"/proc/self/fd/{parent}/{name}", _xattrs_of(m))
        if not m.issym():
            # The node was just made by us, so fchmodat following it is safe.
            os.chmod(name, mode, dir_fd=parent)
        os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)

    def _directory(
        self, parent: int, name: str, m: tarfile.TarInfo, mode: int, uid: int, gid: int
    ) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a directory over a file: replace the file
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, _DIR_READ, dir_fd=parent)
        try:
            os.fchown(fd, uid, gid)
            _set_xattrs(fd, _xattrs_of(m))
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _hardlink(self, parts: tuple[str, ...], path: str, m: tarfile.TarInfo) -> None:
        tparts = _parts(
            m.linkname, f"hardlink target {_show(m.linkname)} of layer entry {_show(m.name)}"
        )
        tpath = "/".join(tparts)
        if tpath not in self.linkable:
            raise _refuse(
                m.name,
                f"is a hardlink to {_show(m.linkname)}, which is not an earlier file of this layer",
            )
        self.counts["hardlinks"] += 1
        self.linkable.add(path)
        if tpath in self.skipped:
            self.skipped.add(path)
            return
        tparent = self._dir(tparts[:-1], m.name, create=False)
        if tparent is None:
            raise _refuse(m.name, f"is a hardlink to {_show(m.linkname)}, which is gone")
        tparent = os.dup(tparent)
        try:
            parent = self._mkdirs(parts[:-1], m.name)
            name = parts[-1]
            # linkat(2) without AT_SYMLINK_FOLLOW: links the entry itself, follows nothing.
            self._create(
                parent,
                name,
                lambda: os.link(
                    tparts[-1], name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False
                ),
            )
        finally:
            os.close(tparent)

    def finish(self) -> None:
        """Directory mtimes last: making their content changed them."""
        for parts, ns in self.dir_times:
            if not parts:
                os.utime(self.root, ns=(ns, ns))
                continue
            parent = self._dir(parts[:-1], "/".join(parts), create=False)
            if parent is not None:
                try:
                    os.utime(parts[-1], ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    pass


def _id(value: int, m: tarfile.TarInfo) -> int:
    if not 0 <= value <= _MAX_ID:
        raise _refuse(m.name, f"has an invalid owner id {value}")
    return value


def _ns(m: tarfile.TarInfo) -> int:
    ns = round(m.mtime * 1_000_000_000) if isinstance(m.mtime, float) else m.mtime * 10**9
    if not -(2**63) < ns < 2**63:
        raise _refuse(m.name, f"has an invalid mtime {m.mtime}")
    return ns


def _read_head(raw: _HashingReader, n: int) -> bytes:
    head = b""
    while len(head) < n:
        more = raw.read(n - len(head))
        if not more:
            break
        head += more
    return head


def _compression(head: bytes, compression: str | None) -> str:
    if compression not in (None, "gzip", "none", "zstd"):
        raise LayerError(
            f"unknown layer compression {compression!r}; use 'gzip', 'none' or None (detect)"
        )
    if compression == "zstd" or (compression is None and head.startswith(_ZSTD_MAGIC)):
        raise LayerError("zstd layers are not supported yet; use a gzip or uncompressed layer")
    if compression is None:
        return "gzip" if head.startswith(_GZIP_MAGIC) else "none"
    return compression


def _unpack(plain: _HashingReader, ex: _Extractor, what: str) -> None:
    """Feed every member of the tar read from ``plain`` to ``ex``; check that the tar ends."""
    with tarfile.open(
        fileobj=plain,  # type: ignore[arg-type]
        mode="r|",
        bufsize=_TAR_BUF,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        while (member := tar.next()) is not None:
            tar.members.clear()  # a streamed tar would keep every header otherwise
            try:
                ex.add(tar, member)
            except OSError as e:
                if isinstance(e, _gzip.BadGzipFile):
                    raise
                # Still an OSError (errno kept), now naming the entry rather than a bare name.
                raise OSError(e.errno, f"extracting layer entry: {e.strerror}", member.name) from e
        # tarfile ends quietly on a truncated or garbled header after the first one; a
        # whole tar has a zero block where the next header would be.
        end = plain.window(tar.offset, tarfile.BLOCKSIZE)
        if len(end) < tarfile.BLOCKSIZE:
            raise LayerError(
                f"layer is truncated: the {what} stream ends at byte {plain.size} without its "
                "end-of-archive block; fetch the layer again"
            )
        if end.count(0) != tarfile.BLOCKSIZE:
            raise LayerError(
                f"layer has an invalid tar header at byte {tar.offset}; the blob is corrupt, "
                "fetch it again"
            )


def extract_layer(
    stream: BinaryIO,
    dest: Path | str,
    *,
    whiteouts: str = "overlay",
    compression: str | None = None,
    devices: str = "keep",
) -> ExtractStats:
    """Extract the layer tar read from ``stream`` into the directory ``dest``, safely.

    ``whiteouts="overlay"``: ``dest`` becomes one overlayfs layer directory; ``.wh.NAME``
    becomes a character device 0/0 ``NAME`` and ``.wh..wh..opq`` the xattr
    ``trusted.overlay.opaque=y`` on its directory. ``whiteouts="apply"``: ``dest`` is a
    flattened root filesystem holding the layers below; ``.wh.NAME`` deletes ``NAME``, and
    ``.wh..wh..opq`` deletes what the layers below put in its directory (not what this layer
    puts there, before or after the marker).

    ``compression``: None detects gzip by its magic bytes; "gzip" or "none" say it; zstd is
    refused. ``devices="skip"`` counts device nodes and skips them (fifos are still made):
    mknod(2) fails in a user namespace, and a rootless extraction has no use for them.

    The stream is hashed while it is read, to its end, so the result carries the digest of
    the bytes read and the diff_id of the tar inside. On any error this raises (LayerError
    for a hostile or broken layer, OSError for the filesystem) and leaves ``dest`` half
    written: the caller extracts into a temporary directory and renames it, or removes it.
    """
    if whiteouts not in ("overlay", "apply"):
        raise LayerError(f"unknown whiteout mode {whiteouts!r}; use 'overlay' or 'apply'")
    if devices not in ("keep", "skip"):
        raise LayerError(f"unknown devices mode {devices!r}; use 'keep' or 'skip'")
    raw = _HashingReader(stream)
    head = _read_head(raw, len(_ZSTD_MAGIC))
    kind = _compression(head, compression)
    source = _Prefixed(head, raw)
    # The plain reader remembers its last bytes, to check how the tar ended (see below).
    unpacked: BinaryIO | _Prefixed = (
        _gzip.GzipFile(fileobj=source, mode="rb") if kind == "gzip" else source  # type: ignore[arg-type]
    )
    plain = _HashingReader(unpacked, keep=2 * _TAR_BUF + 2 * tarfile.BLOCKSIZE)  # type: ignore[arg-type]
    Path(dest).mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extractor(root_fd, whiteouts, devices)
    what = "gzip-compressed tar" if kind == "gzip" else "tar"
    try:
        try:
            _unpack(plain, ex, what)
            plain.drain()
            raw.drain()  # to the end, so the digest covers every byte of the blob
        except (tarfile.TarError, EOFError, zlib.error, _gzip.BadGzipFile) as e:
            raise LayerError(
                f"layer is not a valid {what} stream ({e}); the blob is corrupt or truncated, "
                "fetch it again"
            ) from e
        ex.finish()
    finally:
        ex.close()
        os.close(root_fd)
    return ExtractStats(**ex.counts, diff_id=plain.digest(), digest=raw.digest(), size=raw.size)


# --- creation -------------------------------------------------------------------------------
def is_overlay_whiteout(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is an overlayfs whiteout: a character device numbered 0/0."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_overlay_opaque(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a directory overlayfs treats as opaque (hides the layers below)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOENT, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise


def _read_xattrs(path: str) -> dict[str, str]:
    """The xattrs of ``path`` a layer may carry, as PAX records, in a fixed order."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for name in sorted(n for n in names if n.startswith("user.") or n in _XATTRS_KEPT):
        value = os.getxattr(path, name, follow_symlinks=False)
        out[_PAX_XATTR + name] = value.decode("utf-8", "surrogateescape")
    return out


def _tree(top: str, prefix: str, overlay: bool) -> Iterator[tuple[str, str, os.stat_result, str]]:
    """(tar name, host path, lstat, kind) for everything below ``top``, in layer order.

    Sorted by the name as written (bytes), each directory before its content, its opaque
    marker right after it, so the same tree always gives the same tar.
    """
    items = []
    with os.scandir(top) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            name, kind = e.name, "node"
            if stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                name, kind = WHITEOUT_PREFIX + name, "whiteout"
            elif stat.S_ISSOCK(st.st_mode):
                continue  # a tar cannot hold a socket; Docker leaves them out too
            items.append((os.fsencode(name), name, e.path, st, kind))
    items.sort(key=lambda item: item[0])
    for _, name, path, st, kind in items:
        rel = prefix + name
        yield rel, path, st, kind
        if kind == "dir":
            if overlay and is_overlay_opaque(path):
                yield f"{rel}/{OPAQUE_MARKER}", path, st, "opaque"
            yield from _tree(path, rel + "/", overlay)


def create_layer(
    src: Path | str,
    out: BinaryIO,
    *,
    overlay_whiteouts: bool = True,
    gzip: bool = False,
    mtime: int | None = None,
) -> LayerDigests:
    """Write the directory tree ``src`` to ``out`` as a deterministic layer tar.

    Same tree, same bytes: entries sorted, PAX format, numeric owners only, no atime or
    ctime, hardlinks inside the tree kept as hardlinks, allowed xattrs as PAX
    ``SCHILY.xattr.*`` records. The root directory itself is not an entry (as in Docker's
    layers). ``mtime`` clamps every entry's mtime to at most that value (reproducible builds,
    as SOURCE_DATE_EPOCH). With ``overlay_whiteouts`` (``src`` is an overlay upper
    directory), a whiteout device becomes an empty ``.wh.NAME`` and an opaque directory gets
    a ``.wh..wh..opq`` entry. With ``gzip``, the stored bytes are gzip (level 6, no name, no
    timestamp) and ``digest`` is theirs while ``diff_id`` stays the tar's.
    """
    top = os.fspath(src)
    if not os.path.isdir(top):
        raise LayerError(f"layer source {top!r} is not a directory; pass the layer's directory")
    raw = _HashingWriter(out)
    gz = (
        _gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw, mtime=0)  # type: ignore[arg-type]
        if gzip
        else None
    )
    plain = _HashingWriter(gz) if gz is not None else raw
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(
        fileobj=plain,  # type: ignore[arg-type]
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
        bufsize=_TAR_BUF,
    ) as tar:
        for rel, path, st, kind in _tree(top, "", overlay_whiteouts):
            ti = tarfile.TarInfo(rel)
            ti.uid, ti.gid, ti.uname, ti.gname = st.st_uid, st.st_gid, "", ""
            ti.mtime = int(st.st_mtime) if mtime is None else min(int(st.st_mtime), mtime)
            ti.mode = stat.S_IMODE(st.st_mode)
            if kind in ("whiteout", "opaque"):
                # Markers are empty files; a whiteout's own mode means nothing (Docker: 0600).
                ti.type = tarfile.REGTYPE
                if kind == "whiteout":
                    ti.mode = 0o600
                tar.addfile(ti)
                continue
            key = (st.st_dev, st.st_ino)
            if kind != "dir" and st.st_nlink > 1 and key in links:
                ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
                tar.addfile(ti)
                continue
            if kind != "dir" and st.st_nlink > 1:
                links[key] = rel
            ti.pax_headers = _read_xattrs(path)
            if stat.S_ISREG(st.st_mode):
                ti.type, ti.size = tarfile.REGTYPE, st.st_size
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with open(fd, "rb") as f:
                    tar.addfile(ti, f)
                continue
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
    if gz is not None:
        gz.close()
    raw.flush()
    return LayerDigests(diff_id=plain.digest(), digest=raw.digest(), size=raw.size)

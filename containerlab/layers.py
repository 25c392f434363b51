"""Layers: how one image serves many containers without a copy each (overlayfs).

An image is a stack of read-only directories, its *layers*, base layer first. overlayfs
shows them as one merged tree: a path comes from the top-most layer that has it. A
container adds one writable directory on top, the *upper* dir. The kernel never writes to
a lower layer: changing a lower file first copies the whole file up (*copy-up*), deleting
one leaves a *whiteout* in the upper dir (a character device 0/0 of the same name) that
hides every lower copy, and a directory deleted and made again is marked *opaque*
(xattr ``trusted.overlay.opaque=y``) so that nothing below it shows through.

What a container changed is therefore exactly its upper dir: :func:`diff` lists it as
``docker diff`` does, and :func:`diff_tar` packs it as an OCI layer tar, which is how
``docker commit`` and every ``RUN`` step of a build make a new layer.

Everything here works on the host's mount namespace from any process: mount(2) is safe
from a multi-threaded program (only unshare and setns are not).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from containerlab import layertar, syscalls
from containerlab.errors import LayerError

# One definition of what overlayfs stores, shared with the layer tars (layertar turns them
# into the OCI spelling, ``.wh.NAME`` and ``.wh..wh..opq``, and back).
from containerlab.layertar import OPAQUE_XATTR, LayerDigests

PathLike = str | os.PathLike[str]

#: The most lower dirs one overlay mount may stack (``OVL_MAX_STACK`` in the kernel).
MAX_LOWERS = 500

#: mount(2) copies at most one page of option text: longer ``lowerdir=`` lists are cut.
MAX_OPTIONS_BYTES = 4095


# --- the mount -----------------------------------------------------------------------------------
def _escape(path: PathLike) -> str:
    # overlayfs splits its options on ',' and lowerdir on ':'; a backslash escapes both.
    p = os.fspath(path)
    return p.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(
    lowers: Sequence[PathLike],
    upper: PathLike | None = None,
    work: PathLike | None = None,
    options: Sequence[str] = (),
) -> str:
    """The mount data string for an overlay: ``lowerdir=TOP:...:BASE,upperdir=U,workdir=W``.

    ``lowers`` are given **base layer first**, as an image lists its layers; overlayfs wants
    the top-most first, so they are reversed here. ``upper=None``: a read-only overlay.
    """
    if not lowers:
        raise LayerError("an overlay needs at least one lower dir (the image's layers)")
    if (upper is None) != (work is None):
        raise LayerError("give both an upper and a work dir (a writable overlay) or neither")
    opts = ["lowerdir=" + ":".join(_escape(p) for p in reversed(lowers))]
    if upper is not None and work is not None:
        opts += [f"upperdir={_escape(upper)}", f"workdir={_escape(work)}"]
    opts += list(options)
    return ",".join(opts)


@dataclass(frozen=True)
class OverlayDirs:
    """The directories of an overlay mount, read back from its mount options."""

    lowers: tuple[str, ...]  # base layer first (the reverse of lowerdir=)
    upper: str | None  # None: a read-only overlay
    work: str | None


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _octal_unescape(text: str) -> str:
    # mountinfo shows space, tab, newline, backslash and comma as octal escapes (\040...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _unescape(text: str) -> str:
    # overlayfs's own escapes: a backslash before ':', ',' or another backslash.
    return re.sub(r"\\(.)", r"\1", text)


def parse_overlay_options(super_options: str) -> OverlayDirs:
    """The lower, upper and work dirs of an overlay mount, from its options (the last field
    of its ``/proc/PID/mountinfo`` line, ``rootfs.Mount.super_options``)."""
    fields: dict[str, str] = {}
    for opt in super_options.split(","):  # a comma in a path is shown as \054
        key, _, value = opt.partition("=")
        fields[key] = _octal_unescape(value)
    if "lowerdir" not in fields:
        raise LayerError(f"not the options of an overlay mount (no lowerdir=): {super_options!r}")
    lowers = [_unescape(p) for p in _split_unescaped(fields["lowerdir"], ":")]
    upper = fields.get("upperdir")
    work = fields.get("workdir")
    return OverlayDirs(
        lowers=tuple(reversed(lowers)),
        upper=None if upper is None else _unescape(upper),
        work=None if work is None else _unescape(work),
    )


def _mount_of(path: str) -> tuple[int, str, str]:
    """(mount id, mount point, filesystem type) of the mount that holds ``path``."""
    from containerlab import rootfs

    real = os.path.realpath(path)
    best = None
    for m in rootfs.mountinfo("self"):
        mp = m.mountpoint
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and (
            best is None or len(mp) >= len(best.mountpoint)
        ):
            best = m  # the last mount on the longest matching mount point is on top
    if best is None:
        return (-1, "/", "unknown")
    return (best.mount_id, best.mountpoint, best.fstype)


def _diagnose(
    lowers: Sequence[str], upper: str | None, work: str | None, target: str
) -> str | None:
    """Why an overlay mount failed, with the fix; None when no reason is found."""
    if not os.path.isdir(target):
        return f"overlay mount point '{target}' is not a directory; create it first (mkdir -p)"
    for i, lower in enumerate(lowers):
        if not os.path.isdir(lower):
            what = "does not exist" if not os.path.lexists(lower) else "is not a directory"
            return (
                f"lower dir {i} of {len(lowers)} '{lower}' {what}; "
                "check the path (lowers are listed base layer first)"
            )
    if upper is None:
        if len(lowers) < 2:
            return (
                "a read-only overlay (no upper dir) needs at least 2 lower dirs; "
                "add an empty lower dir, or use a read-only bind mount for a single one"
            )
        return None
    assert work is not None  # overlay_options() checked that both or neither are given
    for role, d in (("upper", upper), ("work", work)):
        if not os.path.isdir(d):
            return f"{role} dir '{d}' does not exist; create it first (mkdir -p)"
    up_id, up_point, up_type = _mount_of(upper)
    if up_type in ("overlay", "nfs", "nfs4", "9p", "vboxsf", "fuse", "virtiofs", "cifs"):
        return (
            f"upper dir '{upper}' is on a filesystem of type {up_type} (at {up_point}), which "
            "cannot be an overlay's upper dir (it needs xattrs, whiteouts and O_TMPFILE); "
            "put the upper and work dirs on the machine's own disk or a tmpfs"
        )
    work_id, work_point, _ = _mount_of(work)
    if work_id != up_id:
        return (
            f"work dir '{work}' (on {work_point}) and upper dir '{upper}' (on {up_point}) must be "
            "on the same mount; make the work dir a sibling of the upper dir"
        )
    ru, rw = os.path.realpath(upper), os.path.realpath(work)
    if ru == rw or ru.startswith(rw + "/") or rw.startswith(ru + "/"):
        return (
            f"upper dir '{upper}' and work dir '{work}' must be separate directories, neither "
            "inside the other; make them siblings"
        )
    return None


def mount_overlay(
    lowers: Sequence[PathLike],
    upper: PathLike | None,
    work: PathLike | None,
    target: PathLike,
    *,
    options: Sequence[str] = (),
) -> None:
    """Mount an overlay on ``target`` (no clean-up: prefer :func:`overlay`).

    Raises :class:`LayerError` naming what is wrong and the fix; the kernel's own error
    (``mount ...: Invalid argument [EINVAL]``) is kept as its ``__cause__`` and in the text.
    """
    lowers_s = [os.fspath(p) for p in lowers]
    upper_s = None if upper is None else os.fspath(upper)
    work_s = None if work is None else os.fspath(work)
    target_s = os.fspath(target)
    if len(lowers_s) > MAX_LOWERS:
        raise LayerError(
            f"{len(lowers_s)} lower dirs, overlayfs stacks at most {MAX_LOWERS}; "
            "squash some layers into one"
        )
    data = overlay_options(lowers_s, upper_s, work_s, options)
    if len(data.encode()) > MAX_OPTIONS_BYTES:
        raise LayerError(
            f"the overlay options are {len(data.encode())} bytes, mount(2) takes at most "
            f"{MAX_OPTIONS_BYTES}; use shorter layer paths (Docker links them as l/<short id>) "
            "or fewer layers"
        )
    try:
        syscalls.mount("overlay", target_s, "overlay", 0, data)
    except OSError as e:
        reason = _diagnose(lowers_s, upper_s, work_s, target_s)
        if reason is None:
            reason = f"overlay mount on '{target_s}' failed; `dmesg | grep overlay` says why"
        raise LayerError(f"{reason} (kernel: {e})") from e


def unmount(target: PathLike) -> None:
    """Unmount an overlay; lazily (``umount -l``) if something still uses it."""
    t = os.fspath(target)
    try:
        syscalls.umount2(t)
    except OSError as e:
        if e.errno == errno.EBUSY:
            # A process still has a file open or its cwd there: detach now, free when unused.
            syscalls.umount2(t, syscalls.MNT_DETACH)
        elif e.errno != errno.EINVAL:  # EINVAL: already unmounted
            raise


@contextmanager
def overlay(
    lowers: Sequence[PathLike],
    upper: PathLike | None,
    work: PathLike | None,
    target: PathLike,
    *,
    options: Sequence[str] = (),
) -> Iterator[Path]:
    """Mount ``lowers`` (base layer first) with an optional writable ``upper`` on ``target``.

    ``upper=None`` (and ``work=None``) gives a read-only merged view of the lowers. The
    work dir is overlayfs's scratch space for atomic copy-ups; it must be empty-ish and on
    the same mount as the upper dir. Yields ``target``; unmounts when the block ends, also
    when it raises. ``options`` are extra overlayfs options (``"index=off"``...).
    """
    mount_overlay(lowers, upper, work, target, options=options)
    try:
        yield Path(target)
    finally:
        unmount(target)


# --- whiteouts and opaque directories ------------------------------------------------------------
#: Whether a path is an overlayfs whiteout: a character device 0/0 (never follows links).
is_whiteout = layertar.is_overlay_whiteout

#: Whether a path is a directory marked opaque (``trusted.overlay.opaque=y``).
is_opaque = layertar.is_overlay_opaque


def make_whiteout(path: PathLike) -> None:
    """Create a whiteout at ``path``: a character device 0/0, overlayfs's "deleted here"."""
    p = os.fspath(path)
    syscalls.explain(f"mknod({p!r}, S_IFCHR | 0000, makedev(0, 0))", f"mknod -m 000 {p} c 0 0")
    try:
        os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except OSError as e:
        raise syscalls.SyscallError("mknod", e.errno or 0, p, "whiteout") from None


def make_opaque(path: PathLike) -> None:
    """Mark a directory of an upper layer opaque: the lower dirs of the same path are hidden."""
    p = os.fspath(path)
    syscalls.explain(
        f"setxattr({p!r}, {OPAQUE_XATTR!r}, 'y')", f"setfattr -n {OPAQUE_XATTR} -v y {p}"
    )
    try:
        os.setxattr(p, OPAQUE_XATTR, b"y", follow_symlinks=False)
    except OSError as e:
        raise syscalls.SyscallError("setxattr", e.errno or 0, p, OPAQUE_XATTR) from None


# --- where a path comes from ---------------------------------------------------------------------
def _parts(path: str) -> list[str]:
    norm = posixpath.normpath("/" + path.lstrip("/"))
    return [p for p in norm.split("/") if p]


def _resolve(path: str, layers: Sequence[PathLike]) -> tuple[list[int], bool]:
    """The layers (indexes, top-most first) that make up ``path`` in the merged view, and
    whether it is a directory. One index for a non-directory (the winner), every merging
    layer for a directory; ``[]`` when the path is absent or whited out."""
    active = list(range(len(layers) - 1, -1, -1))  # every layer's root merges into "/"
    prefix: list[str] = []
    isdir = True
    for name in _parts(path):
        if not isdir:
            return [], False  # a file in the middle of the path: nothing below it
        found: list[int] = []
        for idx in active:
            p = os.path.join(os.fspath(layers[idx]), *prefix, name)
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if is_whiteout(p):
                break  # deleted here: hides every layer below
            if not stat.S_ISDIR(st.st_mode):
                if not found:  # the top-most non-directory wins and hides the rest
                    found, isdir = [idx], False
                break  # below a directory, a lower non-directory is hidden
            found.append(idx)
            if is_opaque(p):
                break  # an opaque directory hides the same directory in lower layers
        if not found:
            return [], False
        active = found
        prefix.append(name)
    return active, isdir


def layer_of(path: str, lowers: Sequence[PathLike], upper: PathLike | None = None) -> int | None:
    """Which layer ``path`` of the merged view comes from: its index in ``lowers`` (base
    layer first), ``len(lowers)`` for the upper dir, or None if it is absent or whited out.

    For a directory present in several layers (they merge) the top-most one is given.
    """
    layers = [*lowers, *([upper] if upper is not None else [])]
    found, _ = _resolve(path, layers)
    return found[0] if found else None


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every path under ``root`` (relative, "/"-led) with its lstat; never follows links."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(root + rel), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            sub = f"{rel}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield sub, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(sub)


def stack_view(
    lowers: Sequence[PathLike],
    upper: PathLike | None = None,
    paths: Sequence[str] | None = None,
) -> dict[str, int]:
    """``{path: layer index}`` for the merged view (see :func:`layer_of`), sorted by path.

    ``paths=None``: every path that any layer holds. Paths that are absent or whited out in
    the merged view are left out.
    """
    layers = [*lowers, *([upper] if upper is not None else [])]
    if paths is None:
        every: set[str] = set()
        for layer in layers:
            every.update(rel for rel, _ in _walk(os.fspath(layer)))
        paths = sorted(every)
    out = {}
    for p in sorted("/" + "/".join(_parts(p)) for p in paths):
        idx = layer_of(p, lowers, upper)
        if idx is not None:
            out[p] = idx
    return out


EntryKind = Literal["file", "dir", "opaque", "symlink", "whiteout", "other"]


@dataclass(frozen=True)
class Entry:
    """One path as one layer stores it (what a picture of the stack draws)."""

    layer: int  # index, base layer first; len(lowers) is the upper dir
    path: str  # "/etc/passwd"
    kind: EntryKind  # "opaque" is a directory that hides the lower ones


def _kind(full: str, st: os.stat_result) -> EntryKind:
    if is_whiteout(full):
        return "whiteout"
    if stat.S_ISDIR(st.st_mode):
        return "opaque" if is_opaque(full) else "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def layer_entries(lowers: Sequence[PathLike], upper: PathLike | None = None) -> list[Entry]:
    """Every path of every layer with what it is there (file, dir, whiteout, opaque dir)."""
    layers = [*lowers, *([upper] if upper is not None else [])]
    out = []
    for idx, layer in enumerate(layers):
        root = os.fspath(layer)
        out += [Entry(idx, rel, _kind(root + rel, st)) for rel, st in _walk(root)]
    return sorted(out, key=lambda e: (e.path, e.layer))


# --- what a container changed --------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One line of ``docker diff``: A(dded), C(hanged) or D(eleted), and the path."""

    kind: Literal["A", "C", "D"]
    path: str  # "/etc/passwd"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _merged_names(rel: str, layers: Sequence[PathLike]) -> set[str]:
    """The names ``ls`` would show in directory ``rel`` of the merged view of ``layers``."""
    found, isdir = _resolve(rel, layers)
    if not isdir:
        return set()
    names: set[str] = set()
    for idx in found:
        try:
            names.update(os.listdir(os.path.join(os.fspath(layers[idx]), *_parts(rel))))
        except (FileNotFoundError, NotADirectoryError):
            pass
    base = rel.rstrip("/")
    return {n for n in names if _resolve(f"{base}/{n}", layers)[0]}


def diff(upper: PathLike, lowers: Sequence[PathLike]) -> list[Change]:
    """What the upper dir changed relative to the lowers, sorted by path, as ``docker diff``.

    A: in the upper dir, absent below. C: in the upper dir and below (a copied-up file, a
    directory something changed in). D: visible below, hidden now, by a whiteout or by an
    opaque directory (then each hidden name right below it is listed).
    """
    up = os.fspath(upper)
    if not os.path.isdir(up):
        raise LayerError(f"upper dir '{up}' does not exist")
    out: list[Change] = []
    for rel, st in _walk(up):
        if is_whiteout(up + rel):
            if layer_of(rel, lowers) is not None:
                out.append(Change("D", rel))
            continue
        before = _resolve(rel, lowers)
        out.append(Change("C" if before[0] else "A", rel))
        if stat.S_ISDIR(st.st_mode) and is_opaque(up + rel) and before[1]:
            mine = set(os.listdir(up + rel))
            out += [Change("D", f"{rel}/{n}") for n in _merged_names(rel, lowers) - mine]
    return sorted(out, key=lambda c: (c.path, c.kind))


def diff_tar(upper: PathLike, out: PathLike | BinaryIO, **kw: Any) -> LayerDigests:
    """The upper dir as an OCI layer tar: whiteouts become ``.wh.NAME`` entries and opaque
    directories get a ``.wh..wh..opq`` one (what ``docker commit`` stores).

    ``out`` is a path or a binary stream; ``kw`` goes to ``layertar.create_layer`` (``gzip``,
    ``mtime``). Returns the layer's ``diff_id``, ``digest`` and ``size``.
    """
    if isinstance(out, (str, os.PathLike)):
        with open(out, "wb") as f:
            return layertar.create_layer(upper, f, overlay_whiteouts=True, **kw)
    return layertar.create_layer(upper, out, overlay_whiteouts=True, **kw)

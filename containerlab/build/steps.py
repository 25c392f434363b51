"""The two kinds of filesystem step: RUN (a container) and COPY/ADD (files placed directly).

RUN starts a container from the snapshot so far, with the command the Dockerfile gives, and
keeps what it changed: its overlay upper dir becomes the step's layer (deletions as
whiteouts). COPY and ADD need no container: the files are placed in a staging directory at
their destination path and that directory is the layer. Parent directories in the staging
tree copy the attributes the image already has for them, so ``COPY x /tmp/`` does not turn
``/tmp`` from 1777 into 0755.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from containerlab.build.snapshot import Snapshot, add_layer_file
from containerlab.errors import BuildError, ContainerlabError
from containerlab.image.store import Store


# --- RUN ------------------------------------------------------------------------------------
def run_step(
    store: Store,
    snap: Snapshot,
    argv: list[str],
    extra_env: dict[str, str],
    out: Callable[[str], None],
    where: str,
) -> tuple[dict[str, Any], str]:
    """Run ``argv`` in a container of ``snap``; its changes as a layer: (descriptor, diff_id)."""
    from containerlab.runtime import container
    from containerlab.runtime.spec import ContainerSpec

    env = {**snap.env(), **extra_env}
    spec = ContainerSpec(
        image=snap.digest,
        argv=tuple(argv),
        entrypoint=(),  # RUN ignores ENTRYPOINT
        env=env,
        workdir=snap.run.get("WorkingDir") or "/",
        user=snap.run.get("User") or "",
    )
    try:
        c = container.start(
            spec, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except ContainerlabError as e:
        raise BuildError(f"{where}: {e}") from None
    try:
        assert c.process.stdout is not None
        for line in iter(c.process.stdout.readline, b""):
            out(line.decode(errors="replace").rstrip("\n"))
        code = c.wait()
        if code != 0:
            raise BuildError(f"{where}: the command {argv} returned a non-zero code: {code}")
        return _upper_as_layer(store, c.dir / "upper")
    finally:
        c.remove()


def _upper_as_layer(store: Store, upper: Path) -> tuple[dict[str, Any], str]:
    store.tmp.mkdir(parents=True, exist_ok=True)
    from containerlab import layers  # here: a fully cached build never needs it

    with tempfile.TemporaryDirectory(dir=store.tmp) as tmp:
        blob = os.path.join(tmp, "layer.tar.gz")
        with open(blob, "wb") as f:
            d = layers.diff_tar(upper, f, gzip=True)
        return add_layer_file(store, blob, d.digest, d.size), d.diff_id


# --- the image's filesystem, read-only -----------------------------------------------------
@contextlib.contextmanager
def mounted(store: Store, snap: Snapshot) -> Iterator[Path | None]:
    """The snapshot's merged filesystem, mounted read-only (None for an empty image)."""
    if not snap.layers:
        yield None
        return
    from containerlab import layers

    lowers = store.layer_dirs(store.image(snap.digest))
    store.tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.tmp, prefix="view-") as tmp:
        target = Path(tmp) / "merged"
        target.mkdir()
        if len(lowers) == 1:
            # overlayfs needs two lowers for a read-only mount: a read-only bind does it.
            from containerlab import rootfs

            rootfs.bind(str(lowers[0]), str(target), readonly=True, recursive=False)
            try:
                yield target
            finally:
                layers.unmount(target)
        else:
            with layers.overlay(lowers, None, None, target) as merged:
                yield Path(merged)


# --- COPY / ADD ------------------------------------------------------------------------------
def _ids(spec: str | None, root: Path | None) -> tuple[int | None, int | None]:
    """``--chown=user[:group]`` as numbers, names looked up in the image's passwd/group.

    A user alone means its primary group; a bare number with no passwd entry means the
    same number for the group (Docker's rule for --chown, unlike ``run -u``).
    """
    if not spec:
        return None, None
    from containerlab.runtime.user import resolve

    user, _, group = spec.partition(":")
    if not user or spec.count(":") > 1:
        raise BuildError(f"invalid --chown={spec}: use USER, USER:GROUP, UID or UID:GID")
    passwd = str(root / "etc/passwd") if root else "/nonexistent"
    groups = str(root / "etc/group") if root else "/nonexistent"
    try:
        uid, gid, _, _ = resolve(spec, passwd, groups)
    except ContainerlabError as e:
        raise BuildError(f"--chown={spec}: {e}") from None
    if user.isdigit() and not group:
        gid = uid  # BuildKit: a uid alone is also the gid, whatever passwd says
    return uid, gid


def match_sources(root: Path, patterns: list[str], allowed: set[str] | None) -> list[Path]:
    """The files and directories the sources name, relative to ``root`` (globs allowed).

    Globs follow Go's ``filepath.Match`` as Docker does: ``*`` and ``?`` never cross a
    ``/``, so ``*.md`` names the context's top-level Markdown files, not ``doc/x.md``.
    """
    from containerlab.build import dockerignore

    out: list[Path] = []
    for pattern in patterns:
        clean = os.path.normpath(pattern.lstrip("/")) if pattern not in ("", ".") else "."
        if clean.startswith(".."):
            raise BuildError(f"COPY source '{pattern}' is outside the build context")
        if any(ch in clean for ch in "*?["):
            regex = dockerignore.compile_pattern(clean).regex
            candidates = (
                sorted(root.rglob("*"))
                if "**" in clean
                else _walk_depth(root, clean.count("/") + 1)
            )
            found = [
                p
                for p in candidates
                if regex.match(str(p.relative_to(root)))
                and (allowed is None or str(p.relative_to(root)) in allowed)
            ]
            if not found:
                raise BuildError(f"no source files were specified: '{pattern}' matches nothing")
            out.extend(found)
        else:
            p = root / clean
            if not (p.exists() or p.is_symlink()) or (
                allowed is not None and clean != "." and clean not in allowed
            ):
                raise BuildError(
                    f"COPY failed: file not found in build context or excluded "
                    f"by .dockerignore: stat {pattern}: no such file or directory"
                )
            out.append(p)
    return out


def _walk_depth(root: Path, depth: int) -> list[Path]:
    """Every path under ``root`` exactly ``depth`` components down, sorted (no symlinked dirs
    followed): the only candidates a glob of that many components can match."""
    level = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            if d.is_dir() and not d.is_symlink():
                nxt.extend(sorted(d.iterdir()))
        level = nxt
    return level


def content_hash(root: Path, sources: list[Path], allowed: set[str] | None) -> str:
    """What a COPY reads, by content: names, modes, bytes (never mtimes: touching a file
    must not invalidate the cache, changing it must)."""
    h = hashlib.sha256()
    for src in sources:
        for p in [src, *sorted(src.rglob("*"))] if src.is_dir() and not src.is_symlink() else [src]:
            rel = str(p.relative_to(root))
            if allowed is not None and p != root and rel not in allowed:
                continue
            st = p.lstat()
            h.update(f"{rel}\0{stat.S_IMODE(st.st_mode):o}\0{stat.S_IFMT(st.st_mode)}\0".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()


def _mkparents(staging: Path, dest: str, image_root: Path | None) -> None:
    """Create dest's parents in staging with the attributes the image has for them."""
    parts = [p for p in dest.strip("/").split("/") if p][:-1]
    cur_rel = ""
    for part in parts:
        cur_rel = f"{cur_rel}/{part}"
        d = staging / cur_rel.lstrip("/")
        if not d.exists():
            d.mkdir()
            src = image_root / cur_rel.lstrip("/") if image_root else None
            if src is not None and src.is_dir():
                st = src.stat()
                os.chmod(d, stat.S_IMODE(st.st_mode))
                os.chown(d, st.st_uid, st.st_gid)
                os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_step(
    store: Store,
    snap: Snapshot,
    *,
    src_root: Path,
    sources: list[Path],
    dest: str,
    workdir: str,
    chown: str | None,
    chmod: str | None,
    allowed: set[str] | None,
    extract_archives: bool = False,
    inline: tuple[tuple[str, str], ...] = (),
) -> tuple[dict[str, Any], str]:
    """COPY/ADD ``sources`` (already matched under ``src_root``) to ``dest`` as a layer.

    ``inline``: heredoc files, (name, content), written as files of their own (``COPY <<EOF
    /etc/motd``: the file is dest itself; with several, or a dest ending in ``/``, each is
    ``dest/name``).
    """
    # "dir/", "." and ".." name a directory; relative paths are under WORKDIR.
    dir_hint = dest.endswith(("/", "/.", "/..")) or dest in (".", "..")
    dest = os.path.normpath(os.path.join(workdir or "/", dest))
    if dir_hint and dest != "/":
        dest += "/"
    many = len(sources) + len(inline) > 1 or any(s.is_dir() for s in sources if s != src_root)
    dest_is_dir = dest.endswith("/") or many or dest == "/"
    from containerlab import layertar

    store.tmp.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=store.tmp, prefix="copy-") as tmp,
        mounted(store, snap) as image_root,
    ):
        staging = Path(tmp) / "layer"
        staging.mkdir()
        uid, gid = _ids(chown, image_root)
        mode = int(chmod, 8) if chmod else None
        target_rel = dest.rstrip("/") or "/"
        if not dest_is_dir and image_root is not None:
            # COPY a.txt /tmp: an existing directory of the image takes the file inside
            with contextlib.suppress(OSError):
                dest_is_dir = stat.S_ISDIR((image_root / target_rel.lstrip("/")).lstat().st_mode)
        _mkparents(staging, target_rel + ("/x" if dest_is_dir else ""), image_root)
        for name, text in inline:
            path = staging / (target_rel.lstrip("/") + (f"/{name}" if dest_is_dir else ""))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            os.chmod(path, mode if mode is not None else 0o644)
            if uid is not None:
                os.chown(path, uid, gid if gid is not None else uid)
        for src in sources:
            if extract_archives and src.is_file() and _is_archive(src):
                into = staging / target_rel.lstrip("/")
                into.mkdir(parents=True, exist_ok=True)
                with open(src, "rb") as f:
                    layertar.extract_layer(f, into, whiteouts="apply")
                continue
            if src.is_dir() and not src.is_symlink():
                into = staging / target_rel.lstrip("/")
                into.mkdir(parents=True, exist_ok=True)
                _copy_tree(src, into, src_root, allowed, uid, gid, mode)
            else:
                name = target_rel.lstrip("/") + (f"/{src.name}" if dest_is_dir else "")
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                _copy_one(src, staging / name, uid, gid, mode)
        blob = os.path.join(tmp, "layer.tar.gz")
        with open(blob, "wb") as f:
            d = layertar.create_layer(staging, f, overlay_whiteouts=False, gzip=True)
        return add_layer_file(store, blob, d.digest, d.size), d.diff_id


def _is_archive(path: Path) -> bool:
    """Docker's test for ADD: a tar (plain, gzip, bzip2 or xz) whose first header reads.

    Not ``tarfile.is_tarfile``: that calls a file of zero bytes an (empty) archive, and
    ADD would then drop a disk image instead of copying it.
    """
    import tarfile

    try:
        with tarfile.open(path) as t:
            return t.next() is not None
    except Exception:
        return False


def _copy_one(src: Path, dst: Path, uid: int | None, gid: int | None, mode: int | None) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
        if mode is not None:
            os.chmod(dst, mode)
    if uid is not None:
        os.lchown(dst, uid, gid if gid is not None else uid)


def _copy_tree(
    src: Path,
    into: Path,
    src_root: Path,
    allowed: set[str] | None,
    uid: int | None,
    gid: int | None,
    mode: int | None,
) -> None:
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if allowed is not None and str(p.relative_to(src_root)) not in allowed:
            continue
        target = into / rel
        if p.is_dir() and not p.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copystat(p, target)
            if mode is not None:
                os.chmod(target, mode)
            if uid is not None:
                os.chown(target, uid, gid if gid is not None else uid)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_one(p, target, uid, gid, mode)

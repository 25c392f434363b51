"""Image archives: images in and out of the store as files, without a registry.

Three shapes, the ones Docker and the OCI tools exchange:

* the **OCI image layout**, a directory (``oci-layout``, ``index.json``, ``blobs/sha256/``)
  that skopeo, umoci, buildkit and podman read and write. Blobs are copied byte for byte, so
  an image keeps its manifest digest. A tag is the ``org.opencontainers.image.ref.name``
  annotation of an ``index.json`` entry: the short tag (``latest``), as skopeo and umoci write
  it; we add ``io.containerd.image.name`` with the full reference, as Docker 25+ does.
* the **docker archive**, what ``docker save`` writes and ``docker load`` reads: a tar with a
  ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``), the config as ``<hex>.json``, each
  layer as an *uncompressed* tar ``<diff_id hex>/layer.tar``, and the legacy ``repositories``
  file. There is no registry manifest in it, so a loaded image gets a new manifest digest;
  its image id (the config digest) is kept.
* a **plain root filesystem tarball**: ``docker import`` makes a one-layer image of it and
  ``docker export`` flattens an image's layers back into one.

Loading never trusts the file: every digest, size and diff_id that can be checked is, member
names are refused if they could point outside the archive, and blobs are held in temporary
files until *everything* has been checked, so a refused archive leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from containerlab.errors import DigestMismatchError, ImageError
from containerlab.image import oci
from containerlab.image.reference import Reference, parse
from containerlab.image.store import Image, Store

T = TypeVar("T")

if TYPE_CHECKING:  # layertar is imported where used (import/export only)
    from containerlab.layertar import LayerDigests

PathLike = str | os.PathLike[str]

#: The annotation Docker 25+ and containerd add next to ``ref.name``: the full reference.
CONTAINERD_NAME = "io.containerd.image.name"

#: The content of an OCI layout's ``oci-layout`` file.
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}

_CHUNK = 1 << 20
#: Manifests, configs, indexes and manifest.json are read whole: refuse giant ones.
_JSON_LIMIT = 8 << 20
#: Nested indexes followed at most this deep (a loop of indexes must end).
_INDEX_DEPTH = 4
#: Symlinks inside a docker archive followed at most this many times.
_LINK_HOPS = 8


# --- checking while staging ------------------------------------------------------------------
class _DiffIdHasher:
    """sha256 of a layer's *uncompressed* tar (its diff_id), fed the blob chunk by chunk.

    ``compression`` is ``"gzip"``, ``"none"`` or ``"detect"`` (gzip if the blob starts with
    gzip's magic bytes). Output is produced at most a chunk at a time, so a small gzip bomb
    costs time, not memory.
    """

    def __init__(self, compression: str):
        self.compression = compression
        self._hash = hashlib.sha256()
        self._head = b""
        self._z: Any = None
        self._members = 0  # gzip members started (concatenated gzip is valid gzip)

    def update(self, data: bytes) -> None:
        if self.compression == "detect":
            self._head += data
            if len(self._head) < 2:
                return
            self.compression = "gzip" if self._head[:2] == b"\x1f\x8b" else "none"
            data, self._head = self._head, b""
        if self.compression == "none":
            self._hash.update(data)
            return
        while True:
            if self._z is None:
                if not data or (self._members and not data.strip(b"\0")):
                    return  # (zero padding after the last member is allowed, as by gzip(1))
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._members += 1
            try:
                out = self._z.decompress(data, _CHUNK)
            except zlib.error as e:
                raise ImageError(f"layer is not valid gzip: {e}") from None
            self._hash.update(out)
            if self._z.eof:  # one member done; another may follow (concatenated gzip)
                data, self._z = self._z.unused_data, None
                continue
            data = self._z.unconsumed_tail
            if not data and len(out) < _CHUNK:
                return  # a full chunk out may mean zlib holds more: go round again

    def finish(self) -> tuple[str, bool]:
        """``(diff_id, gzipped)``."""
        if self.compression == "detect":  # fewer than two bytes: not gzip
            self.compression = "none"
            self._hash.update(self._head)
        if self.compression == "gzip" and (self._z is not None or not self._members):
            raise ImageError("layer is truncated gzip: the archive is incomplete")
        return "sha256:" + self._hash.hexdigest(), self.compression == "gzip"


@dataclass(frozen=True)
class _Staged:
    """A blob held in a temporary file of the store, checked, waiting to be committed."""

    digest: str
    size: int
    diff_id: str | None  # for layers: sha256 of the uncompressed tar
    gzipped: bool


class _Staging:
    """All the blobs of one load, committed together when the ``ExitStack`` closes cleanly.

    Each blob goes through ``Store.ingest``, which renames its temp file into place only when
    its ``with`` block ends without an exception. Keeping every block open until the whole
    archive has been checked is what makes a load all-or-nothing: an error anywhere unwinds
    the stack and every temp file is removed.
    """

    def __init__(self, store: Store, stack: contextlib.ExitStack):
        self.store = store
        self.stack = stack
        self.staged: dict[str, _Staged] = {}

    def add(
        self,
        src: BinaryIO,
        what: str,
        *,
        expected: str | None = None,
        size: int | None = None,
        layer: str | None = None,
    ) -> _Staged:
        """Stream ``src`` into a temp blob; ``layer`` ("gzip"/"none"/"detect") also hashes
        the uncompressed tar. A wrong digest or size raises at once, naming ``what``."""
        if expected is not None and expected in self.staged and layer is None:
            return self.staged[expected]
        writer = self.stack.enter_context(self.store.ingest())
        h = hashlib.sha256()
        diff = _DiffIdHasher(layer) if layer else None
        n = 0
        while chunk := src.read(_CHUNK):
            writer.write(chunk)
            h.update(chunk)
            n += len(chunk)
            if diff:
                diff.update(chunk)
        digest = "sha256:" + h.hexdigest()
        # Checked here rather than by ingest: ingest checks on leaving its block, when other
        # blobs may already have been committed.
        if expected is not None and digest != expected:
            raise DigestMismatchError(
                f"{what} {expected[:19]}... does not match its content (got {digest[:19]}...): "
                "the archive is corrupt or was tampered with; nothing was loaded"
            )
        if size is not None and n != size:
            raise DigestMismatchError(
                f"{what} is {n} bytes but is described as {size}: nothing was loaded"
            )
        diff_id, gzipped = diff.finish() if diff else (None, False)
        staged = _Staged(digest, n, diff_id, gzipped)
        self.staged[digest] = staged
        return staged

    def add_bytes(self, data: bytes, what: str, expected: str | None = None) -> _Staged:
        return self.add(io.BytesIO(data), what, expected=expected, size=len(data))


def _pending(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a loader under ``store.pending()``: a concurrent ``image prune`` must not remove
    the blobs it wrote before it tags them."""

    @functools.wraps(fn)
    def wrapper(store: Store, *args: Any, **kwargs: Any) -> T:
        with store.pending():
            return fn(store, *args, **kwargs)

    return wrapper


def _check_layers(config: dict[str, Any], n_layers: int, what: str) -> list[str]:
    diff_ids = list(config["rootfs"]["diff_ids"])
    if len(diff_ids) != n_layers:
        raise ImageError(
            f"{what}: the config lists {len(diff_ids)} diff_ids for {n_layers} layers; "
            "the image is inconsistent: nothing was loaded"
        )
    return diff_ids


def _check_diff_id(staged: _Staged, expected: str, what: str) -> None:
    if staged.diff_id != expected:
        raise DigestMismatchError(
            f"{what} unpacks to {str(staged.diff_id)[:19]}... but the config says "
            f"{expected[:19]}...: refusing the image; nothing was loaded"
        )


# --- names ------------------------------------------------------------------------------------
def _tag_of(store: Store, ref: str) -> Reference | None:
    """The tag ``ref`` names in the store (None for a digest or an image id)."""
    try:
        r = parse(ref)
    except ImageError:
        return None
    if r.tag and not r.digest and str(r) in store.tags():
        return r
    return None


def _images(store: Store, refs: list[str]) -> list[tuple[Image, Reference | None]]:
    """Resolve every reference before writing anything: a typo fails fast and clean."""
    if not refs:
        raise ImageError("no image to save; name at least one image")
    return [(store.image(ref), _tag_of(store, ref)) for ref in refs]


def _full_name(annotations: dict[str, Any]) -> str | None:
    """The full reference an index entry carries, if any (else it only has a short tag)."""
    name = annotations.get(CONTAINERD_NAME)
    if isinstance(name, str) and name:
        return name
    name = annotations.get(oci.REF_NAME)
    # skopeo and umoci write a bare tag ("latest"); a ':' or '/' makes it a whole reference.
    if isinstance(name, str) and (":" in name or "/" in name):
        return name
    return None


# --- OCI image layout -------------------------------------------------------------------------
def save_oci_layout(store: Store, refs: list[str], dest_dir: PathLike) -> list[str]:
    """Write images into an OCI image layout directory; returns their manifest digests.

    Blobs are copied as stored (gzip stays gzip), so digests are unchanged. ``dest_dir`` may
    be new, empty, or an existing layout: its other images stay, and an entry with the same
    full name (or, lacking one, the same short tag) is replaced, as skopeo does. Two images
    saved with the same short tag (``busybox:latest``, ``alpine:latest``) both get an entry;
    skopeo and umoci then call ``DIR:latest`` ambiguous, our loader tells them apart.
    """
    images = _images(store, refs)
    dest = Path(dest_dir)
    index = _existing_index(dest)
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for image, tag in images:
        for digest in (image.config_digest, *(la["digest"] for la in image.layers), image.digest):
            _copy_blob_to(store, digest, blobs)
        entry: dict[str, Any] = {
            "mediaType": image.media_type,
            "digest": image.digest,
            "size": len(image.manifest_bytes),
        }
        if tag is not None:
            entry["annotations"] = {oci.REF_NAME: tag.tag, CONTAINERD_NAME: str(tag)}
        if entry not in entries:  # "busybox" and "busybox:latest" are one entry
            entries.append(entry)
    index["manifests"] = [
        m for m in index["manifests"] if not any(_same_name(m, e) for e in entries)
    ] + entries
    _write_atomic(dest / "oci-layout", json.dumps(LAYOUT_VERSION).encode())
    # index.json last: a layout interrupted before this line lists nothing half-copied.
    _write_atomic(dest / "index.json", json.dumps(index, indent=2).encode() + b"\n")
    return [image.digest for image, _ in images]


def _existing_index(dest: Path) -> dict[str, Any]:
    if (dest / "index.json").is_file():
        if not (dest / "oci-layout").is_file():
            raise ImageError(f"{dest} has an index.json but no oci-layout file; choose another")
        return oci.parse_index((dest / "index.json").read_bytes())
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ImageError(
            f"{dest} exists and is not an OCI image layout; give a new or empty directory"
        )
    return {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}


def _same_name(old: dict[str, Any], new: dict[str, Any]) -> bool:
    new_ann = new.get("annotations") or {}
    old_ann = old.get("annotations") or {}
    if not new_ann:
        return False
    old_full = _full_name(old_ann)
    if old_full is not None:
        try:
            return str(parse(old_full)) == new_ann[CONTAINERD_NAME]
        except ImageError:
            return False
    return old_ann.get(oci.REF_NAME) == new_ann[oci.REF_NAME]


def _copy_blob_to(store: Store, digest: str, blobs: Path) -> None:
    target = blobs / digest.split(":", 1)[1]
    size = store.blob_size(digest)
    if target.is_file() and not target.is_symlink() and target.stat().st_size == size:
        return  # content-addressed: same name and size is the same blob
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, store.open_blob(digest) as src:
            shutil.copyfileobj(src, out, _CHUNK)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@_pending
def load_oci_layout(
    store: Store,
    src_dir: PathLike,
    *,
    ref: str | None = None,
    platform: str | None = None,
) -> list[str]:
    """Load images from an OCI image layout; returns the manifest digests, each tagged.

    Without ``ref``: every entry that carries a full name (``io.containerd.image.name``, or a
    ``ref.name`` that is a whole reference) is loaded under that name. A layout that only
    has short tags (what skopeo writes) needs ``ref``: it picks the entry (by full name, then
    by its tag, then the only entry there is) and is the name the image gets. An entry that
    is an index (multi-platform) is resolved to ``platform`` (default: this machine).
    """
    src = Path(src_dir)
    if not (src / "oci-layout").is_file():
        raise ImageError(f"{src} is not an OCI image layout (it has no oci-layout file)")
    layout = _load_json_file(src / "oci-layout", "oci-layout")
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise ImageError(
            f"{src}/oci-layout has imageLayoutVersion "
            f"{layout.get('imageLayoutVersion')!r}; only 1.0.0 is known"
        )
    index = oci.parse_index(_read_limited(src / "index.json", "index.json"))
    chosen = _choose_entries(index["manifests"], ref, platform, src)
    with contextlib.ExitStack() as stack:
        staging = _Staging(store, stack)
        plans: list[tuple[bytes, str]] = []
        for name, entry in chosen:
            manifest_desc = _to_manifest(src, entry, platform, name)
            manifest_bytes = _stage_layout_image(staging, src, manifest_desc, name)
            plans.append((manifest_bytes, name))
    # Every blob is committed now: the manifests can go in and be tagged.
    return [store.add_image(manifest_bytes, name) for manifest_bytes, name in plans]


def _load_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(_read_limited(path, what))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} must be a JSON object")
    return doc


def _open_regular(path: Path, what: str) -> BinaryIO:
    """Open a file of a layout, refusing symlinks (they could point anywhere on the host)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ImageError(f"{what} is missing from the layout ({path})") from None
    except OSError as e:
        raise ImageError(
            f"{what} cannot be read ({path}: {e.strerror}); is it a symlink?"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{what} is not a regular file ({path})")
    return os.fdopen(fd, "rb")


def _read_limited(path: Path, what: str) -> bytes:
    with _open_regular(path, what) as f:
        data = f.read(_JSON_LIMIT + 1)
    if len(data) > _JSON_LIMIT:
        raise ImageError(f"{what} is larger than {_JSON_LIMIT} bytes; refusing to read it")
    return data


def _layout_blob(src: Path, desc: dict[str, Any], what: str) -> BinaryIO:
    digest = oci.check_digest(desc["digest"])  # a checked digest cannot hold a '/' or '..'
    return _open_regular(src / "blobs" / "sha256" / digest.split(":", 1)[1], f"{what} blob")


def _layout_small_blob(src: Path, desc: dict[str, Any], what: str) -> bytes:
    if desc["size"] > _JSON_LIMIT:
        raise ImageError(f"{what} is {desc['size']} bytes; refusing to read it whole")
    with _layout_blob(src, desc, what) as f:
        data = f.read(desc["size"] + 1)
    if len(data) != desc["size"]:
        raise DigestMismatchError(f"{what} is not {desc['size']} bytes as described")
    oci.verify(data, desc["digest"], what)
    return data


def _choose_entries(
    entries: list[dict[str, Any]], ref: str | None, platform: str | None, src: Path
) -> list[tuple[str, dict[str, Any]]]:
    """Which index entries to load, and the full reference each is tagged with."""
    names = [(_full_name(e.get("annotations") or {}), e) for e in entries]
    if ref is not None:
        wanted = parse(ref)
        wanted_ref = str(wanted.with_tag(wanted.tag or "latest"))
        by_full = [e for n, e in names if n is not None and _normal(n) == wanted_ref]
        by_tag = [
            e for e in entries if (e.get("annotations") or {}).get(oci.REF_NAME) == wanted.tag
        ]
        found = by_full or by_tag or (entries if len(entries) == 1 else [])
        if not found:
            raise ImageError(
                f"no image named {ref!r} in the layout at {src}; it has: {_listing(entries)}"
            )
        return [(wanted_ref, _one(found, platform, ref))]
    groups: dict[str, list[dict[str, Any]]] = {}
    for n, e in names:
        if n is not None:
            groups.setdefault(_normal(n), []).append(e)
    if not groups:
        raise ImageError(
            f"the layout at {src} names its images only by tag ({_listing(entries)}); "
            "pass ref='NAME:TAG' to say which one to load and what to call it"
        )
    return [(name, _one(group, platform, name)) for name, group in groups.items()]


def _normal(name: str) -> str:
    r = parse(name)
    return str(r.with_tag(r.tag or "latest"))


def _listing(entries: list[dict[str, Any]]) -> str:
    names = [
        (e.get("annotations") or {}).get(oci.REF_NAME) or e["digest"][:19] + "..." for e in entries
    ]
    return ", ".join(names) or "no images"


def _one(candidates: list[dict[str, Any]], platform: str | None, name: str) -> dict[str, Any]:
    """One entry per name; several with platforms (a layout written per platform) select."""
    if len(candidates) == 1:
        return candidates[0]
    if all("platform" in c for c in candidates):
        return oci.select_platform({"manifests": candidates}, platform)
    raise ImageError(
        f"{len(candidates)} images in the layout are named {name!r}; "
        "pass a full reference as ref to choose one"
    )


def _to_manifest(
    src: Path, desc: dict[str, Any], platform: str | None, name: str, depth: int = 0
) -> dict[str, Any]:
    """Follow (nested) indexes down to the image manifest for ``platform``."""
    if desc["mediaType"] in oci.MANIFEST_TYPES:
        return desc
    if desc["mediaType"] not in oci.INDEX_TYPES:
        raise ImageError(f"{name} in the layout is a {desc['mediaType']!r}, not an image")
    if depth >= _INDEX_DEPTH:
        raise ImageError(f"{name}: indexes nested more than {_INDEX_DEPTH} deep; refusing")
    index = oci.parse_index(_layout_small_blob(src, desc, f"index of {name}"))
    return _to_manifest(src, oci.select_platform(index, platform), platform, name, depth + 1)


def _stage_layout_image(staging: _Staging, src: Path, desc: dict[str, Any], name: str) -> bytes:
    manifest_bytes = _layout_small_blob(src, desc, f"manifest of {name}")
    manifest = oci.parse_manifest(manifest_bytes, desc["mediaType"])
    config_desc = manifest["config"]
    config_bytes = _layout_small_blob(src, config_desc, f"config of {name}")
    config = oci.parse_config(config_bytes)
    diff_ids = _check_layers(config, len(manifest["layers"]), name)
    staging.add_bytes(config_bytes, f"config of {name}", config_desc["digest"])
    for i, (layer, diff_id) in enumerate(zip(manifest["layers"], diff_ids, strict=True)):
        what = f"layer {i} of {name}"
        compression = "gzip" if layer["mediaType"] in oci.GZIP_LAYER_TYPES else "none"
        with _layout_blob(src, layer, what) as f:
            staged = staging.add(
                f, what, expected=layer["digest"], size=layer["size"], layer=compression
            )
        _check_diff_id(staged, diff_id, what)
    staging.add_bytes(manifest_bytes, f"manifest of {name}", desc["digest"])
    return manifest_bytes


# --- docker archive (docker save / docker load) -----------------------------------------------
@contextlib.contextmanager
def _output(out: BinaryIO | PathLike) -> Iterator[BinaryIO]:
    """A path is created (and removed again if writing fails); a file object is left open."""
    if not isinstance(out, str | os.PathLike):
        yield out
        return
    path = Path(out)
    ok = False
    try:
        with open(path, "wb") as f:
            yield f
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _tarinfo(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    # Fixed owner, mode and time: the same images always make the same archive.
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def save_docker_archive(store: Store, refs: list[str], out: BinaryIO | PathLike) -> None:
    """Write images as a ``docker save`` tar, the classic layout that every docker loads.

    ``<config hex>.json``, ``<diff_id hex>/layer.tar`` (uncompressed: a gzip layer in the store
    is gunzipped through a temp file, to learn its size and check its diff_id), then
    ``manifest.json`` and ``repositories``. Tags are written in full
    (``docker.io/library/busybox:latest``). Two references to one image make one entry with
    both tags. ``out`` may be a path or a binary file (written as a stream, never seeked).
    """
    images = _images(store, refs)
    entries: dict[str, dict[str, Any]] = {}  # config digest -> manifest.json entry
    repositories: dict[str, dict[str, str]] = {}
    with _output(out) as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        written: set[str] = set()
        for image, tag in images:
            entry = entries.get(image.config_digest)
            if entry is None:
                entry = entries[image.config_digest] = {
                    "Config": _config_name(image.config_digest),
                    "RepoTags": [],
                    "Layers": [],
                }
                _add_bytes(tar, entry["Config"], store.read_blob(image.config_digest), written)
                for desc, diff_id in zip(image.layers, image.diff_ids, strict=True):
                    entry["Layers"].append(_add_layer(store, tar, desc, diff_id, written))
            if tag is not None and str(tag) not in entry["RepoTags"]:
                entry["RepoTags"].append(str(tag))
                if image.diff_ids:
                    top = image.diff_ids[-1].split(":", 1)[1]
                    repositories.setdefault(tag.name, {})[str(tag.tag)] = top
        manifest = [
            {**e, "RepoTags": e["RepoTags"] or None} for e in entries.values()
        ]  # docker writes null for an image saved by id
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode(), written)
        _add_bytes(tar, "repositories", json.dumps(repositories).encode(), written)


def _config_name(config_digest: str) -> str:
    return config_digest.split(":", 1)[1] + ".json"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, written: set[str]) -> None:
    if name not in written:
        tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        written.add(name)


def _add_layer(
    store: Store, tar: tarfile.TarFile, desc: dict[str, Any], diff_id: str, written: set[str]
) -> str:
    hexid = diff_id.split(":", 1)[1]
    name = f"{hexid}/layer.tar"
    if name in written:
        return name
    tar.addfile(_tarinfo(hexid, directory=True))
    if desc["mediaType"] not in oci.GZIP_LAYER_TYPES:
        if desc["digest"] != diff_id:
            raise ImageError(
                f"uncompressed layer {desc['digest'][:19]}... is not its diff_id "
                f"{diff_id[:19]}...: the image is inconsistent; remove it and pull it again"
            )
        with store.open_blob(desc["digest"]) as f:
            tar.addfile(_tarinfo(name, store.blob_size(desc["digest"])), f)
    else:
        # A tar member's size comes before its data: gunzip to a temp file first.
        store.tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=store.tmp) as tmp:
            h = hashlib.sha256()
            with store.open_blob(desc["digest"]) as f, gzip.GzipFile(fileobj=f) as gz:
                while chunk := gz.read(_CHUNK):
                    h.update(chunk)
                    tmp.write(chunk)
            if "sha256:" + h.hexdigest() != diff_id:
                raise DigestMismatchError(
                    f"layer {desc['digest'][:19]}... unpacks to another diff_id than its "
                    "config says: the store is corrupt; remove the image and pull it again"
                )
            size = tmp.tell()
            tmp.seek(0)
            tar.addfile(_tarinfo(name, size), tmp)
    written.add(name)
    return name


@_pending
def load_docker_archive(store: Store, src: BinaryIO | PathLike) -> list[str]:
    """Load a ``docker save`` tar (classic, or Docker 25+ with an OCI layout inside).

    Returns the manifest digests, in ``manifest.json`` order; each is tagged with its
    ``RepoTags`` (normalised: ``busybox:latest`` becomes ``docker.io/library/busybox:latest``).
    An entry without tags is stored untagged (reachable by digest until ``gc``).

    Layers are stored as the archive holds them: an uncompressed tar becomes an
    ``application/vnd.oci.image.layer.v1.tar`` whose digest *is* its diff_id (not re-gzipped:
    that would cost CPU and give a digest no registry knows anyway); a gzipped one stays gzip.
    If the archive carries the image's original OCI manifest (Docker 25+ writes one under
    ``blobs/sha256/``) and it matches, that manifest is kept, and with it the digest.
    """
    with _open_archive(store, src) as tar:
        members = _members(tar)
        manifest = _archive_manifest(tar, members)
        originals = _archive_oci_manifests(tar, members)
        with contextlib.ExitStack() as stack:
            staging = _Staging(store, stack)
            plans = [
                _stage_archive_image(staging, tar, members, entry, i, originals)
                for i, entry in enumerate(manifest)
            ]
    out = []
    for manifest_bytes, tags in plans:
        digest = store.add_image(manifest_bytes)
        for t in tags:
            store.tag(t, digest)
        out.append(digest)
    return out


@contextlib.contextmanager
def _open_archive(store: Store, src: BinaryIO | PathLike) -> Iterator[tarfile.TarFile]:
    """The tar, opened for reading members by name (gzip or not: ``docker load`` takes both).

    Reading by name needs seeking: a pipe is first copied to a temp file under the store.
    """
    with contextlib.ExitStack() as stack:
        if isinstance(src, str | os.PathLike):
            try:
                f: BinaryIO = stack.enter_context(open(src, "rb"))
            except OSError as e:
                raise ImageError(f"cannot open archive {src}: {e.strerror}") from None
        elif _seekable(src):
            f = src
        else:
            store.tmp.mkdir(parents=True, exist_ok=True)
            f = stack.enter_context(tempfile.TemporaryFile(dir=store.tmp))
            shutil.copyfileobj(src, f, _CHUNK)
            f.seek(0)
        try:
            tar = stack.enter_context(tarfile.open(fileobj=f, mode="r:*"))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ImageError(f"the archive is not a (gzipped) tar file: {e}") from None
        yield tar


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _clean_name(name: str) -> str | None:
    """A member name in canonical form, or None if it could point outside the archive."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)  # "" is the archive's root directory


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member by canonical name; a hostile name anywhere refuses the whole archive."""
    out = {}
    try:
        infos = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ImageError(f"the archive is corrupt or truncated: {e}") from None
    for info in infos:
        name = _clean_name(info.name)
        if name is None:
            raise ImageError(
                f"the archive has a member named {info.name!r}, outside the archive: "
                "refusing it; nothing was loaded"
            )
        out[name] = info
    return out


def _member(members: dict[str, tarfile.TarInfo], path: Any, what: str) -> tarfile.TarInfo:
    """The regular file ``manifest.json`` names, following links only inside the archive."""
    if not isinstance(path, str):
        raise ImageError(f"manifest.json: {what} must be a file name, not {path!r}")
    name = _clean_name(path)
    for _ in range(_LINK_HOPS):
        if name is None:
            raise ImageError(
                f"manifest.json names {path!r} for {what}, outside the archive: refusing it"
            )
        info = members.get(name) if name else None
        if not name:
            raise ImageError(f"manifest.json names {path!r} for {what}, which is not a file")
        if info is None:
            raise ImageError(
                f"manifest.json names {path!r} for {what}, which is not in the archive: "
                "it is incomplete; save it again"
            )
        if info.isfile():
            return info
        if info.issym():  # docker save links repeated layers: ../<id>/layer.tar
            name = _clean_name(
                posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
            )
        elif info.islnk():
            name = _clean_name(info.linkname)
        else:
            raise ImageError(f"manifest.json names {path!r} for {what}, which is not a file")
    raise ImageError(f"manifest.json names {path!r} for {what}: too many links")


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, what: str) -> bytes:
    if info.size > _JSON_LIMIT:
        raise ImageError(f"{what} is {info.size} bytes; refusing to read it whole")
    f = tar.extractfile(info)
    if f is None:
        raise ImageError(f"{what} is not a file in the archive")
    with f:
        try:
            return f.read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ImageError(f"{what} cannot be read: the archive is truncated ({e})") from None


def _archive_manifest(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[dict[str, Any]]:
    if "manifest.json" not in members:
        raise ImageError(
            "the archive has no manifest.json: it is not a `docker save` archive "
            "(for an OCI layout use load_oci_layout, for a root filesystem import_rootfs)"
        )
    data = _read_member(tar, _member(members, "manifest.json", "manifest.json"), "manifest.json")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImageError(f"manifest.json is not valid JSON: {e}; nothing was loaded") from None
    if not isinstance(doc, list) or not doc:
        raise ImageError("manifest.json must be a non-empty list of images")
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"manifest.json entry {i} has no Config and Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageError(f"manifest.json entry {i}: RepoTags must be a list of strings")
    return doc


def _archive_oci_manifests(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> dict[str, bytes]:
    """Docker 25+ also writes an OCI layout in the tar: config digest -> original manifest.

    Only a bonus (it keeps the manifest digest), so anything odd in it is ignored:
    ``manifest.json`` is what ``docker load`` follows, and so do we.
    """
    out: dict[str, bytes] = {}
    if "index.json" not in members or not members["index.json"].isfile():
        return out
    try:
        index = oci.parse_index(_read_member(tar, members["index.json"], "index.json"))
        for desc in index["manifests"]:
            if desc["mediaType"] not in oci.MANIFEST_TYPES:
                continue
            info = members.get("blobs/sha256/" + desc["digest"].split(":", 1)[1])
            if info is None or not info.isfile() or info.size != desc["size"]:
                continue
            data = _read_member(tar, info, "manifest")
            oci.verify(data, desc["digest"], "manifest")
            out[oci.parse_manifest(data, desc["mediaType"])["config"]["digest"]] = data
    except ImageError:
        return {}
    return out


def _digest_named(path: str) -> str | None:
    """The digest a member's name claims: ``<hex>.json``, ``blobs/sha256/<hex>``."""
    base = posixpath.basename(path).removesuffix(".json").removesuffix(".tar")
    if path.startswith("blobs/sha256/") or path.endswith(".json"):
        with contextlib.suppress(ImageError):
            return oci.check_digest("sha256:" + base)
    return None


def _stage_archive_image(
    staging: _Staging,
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    entry: dict[str, Any],
    i: int,
    originals: dict[str, bytes],
) -> tuple[bytes, list[Reference]]:
    what = f"manifest.json entry {i}"
    tags = [parse(t) for t in entry.get("RepoTags") or []]
    config_info = _member(members, entry.get("Config"), f"the config of entry {i}")
    config_bytes = _read_member(tar, config_info, f"config of entry {i}")
    claimed = _digest_named(entry["Config"])
    if claimed is not None:
        oci.verify(config_bytes, claimed, f"config {entry['Config']}")
    config = oci.parse_config(config_bytes)
    diff_ids = _check_layers(config, len(entry["Layers"]), what)
    config_digest = staging.add_bytes(config_bytes, f"config of entry {i}").digest
    layers = []
    for n, (path, diff_id) in enumerate(zip(entry["Layers"], diff_ids, strict=True)):
        lwhat = f"layer {n} ({path}) of entry {i}"
        info = _member(members, path, f"layer {n} of entry {i}")
        f = tar.extractfile(info)
        if f is None:
            raise ImageError(f"{lwhat} is not a file in the archive")
        with f:
            try:
                staged = staging.add(f, lwhat, size=info.size, layer="detect")
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
                raise ImageError(
                    f"{lwhat} cannot be read: the archive is truncated ({e})"
                ) from None
        _check_diff_id(staged, diff_id, lwhat)
        layers.append(
            {
                "mediaType": oci.OCI_LAYER_GZIP if staged.gzipped else oci.OCI_LAYER,
                "digest": staged.digest,
                "size": staged.size,
            }
        )
    original = originals.get(config_digest)
    if original is not None and [
        (la["digest"], la["size"]) for la in oci.parse_manifest(original)["layers"]
    ] == [(la["digest"], la["size"]) for la in layers]:
        manifest_bytes = original
    else:
        manifest_bytes = oci.dumps(
            {
                "schemaVersion": 2,
                "mediaType": oci.OCI_MANIFEST,
                "config": {
                    "mediaType": oci.OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config_bytes),
                },
                "layers": layers,
            }
        )
    staging.add_bytes(manifest_bytes, f"manifest of entry {i}")
    return manifest_bytes, tags


# --- root filesystem tarballs (docker import / docker export) ---------------------------------
#: What ``changes`` may set in an imported image's config (the keys of the config's "config").
IMPORT_CHANGES = (
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
)


@contextlib.contextmanager
def _input(src: BinaryIO | PathLike) -> Iterator[BinaryIO]:
    if isinstance(src, str | os.PathLike):
        try:
            with open(src, "rb") as f:
                yield f
        except FileNotFoundError:
            raise ImageError(f"cannot open {src}: no such file") from None
    else:
        yield src


def _run_config(changes: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for key, value in (changes or {}).items():
        if key not in IMPORT_CHANGES:
            raise ImageError(
                f"cannot set {key!r} on an imported image; choose from {', '.join(IMPORT_CHANGES)}"
            )
        if key in ("Cmd", "Entrypoint") and isinstance(value, str):
            value = ["/bin/sh", "-c", value]  # the shell form, as Docker's CMD "..." is
        cfg[key] = value
    return cfg


@_pending
def import_rootfs(
    store: Store,
    src: BinaryIO | PathLike,
    ref: str,
    *,
    changes: dict[str, Any] | None = None,
) -> str:
    """``docker import``: a plain root filesystem tar becomes a one-layer image; returns its
    manifest digest, tagged ``ref``.

    The tar is not stored as given: it is extracted safely (``layertar.extract_layer`` refuses
    what would escape) and packed again deterministically, gzipped. So a hostile tar cannot
    reach a container, and the same files always give the same image. ``changes`` sets the
    run config (``{"Cmd": ["/bin/sh"], "Env": [...]}``, keys in :data:`IMPORT_CHANGES`).
    The platform is this machine's.
    """
    from containerlab import layertar

    name = parse(ref)
    run_config = _run_config(changes)
    plat_os, arch, *variant = oci.host_platform().split("/")
    store.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=store.tmp, prefix="import-"))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir(mode=0o755)
        with _input(src) as f:
            layertar.extract_layer(f, rootfs, whiteouts="apply")
        layer_file = work / "layer.tar.gz"
        with open(layer_file, "wb") as f:
            layer = layertar.create_layer(rootfs, f, overlay_whiteouts=False, gzip=True)
        config: dict[str, Any] = {
            "architecture": arch,
            "os": plat_os,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created_by": "containerlab import", "comment": "imported"}],
        }
        if variant:
            config["variant"] = variant[0]
        config_bytes = oci.dumps(config)
        oci.parse_config(config_bytes)  # refuse bad changes before anything is stored
        with open(layer_file, "rb") as f:
            store.copy_blob_from(f, layer.digest, layer.size)
        config_digest = store.write_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": {
                "mediaType": oci.OCI_CONFIG,
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": oci.OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
            ],
        }
        return store.add_image(oci.dumps(manifest), name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export_rootfs(store: Store, ref: str, out: BinaryIO | PathLike) -> LayerDigests:
    """``docker export`` of a fresh container: the image's layers flattened into one tar.

    Each layer is extracted in order over the one before with its whiteouts *applied* (a
    ``.wh.name`` deletes ``name``, an opaque marker empties its directory), so what is left is
    exactly what a container would see; then packed as a plain tar with no whiteouts.
    """
    from containerlab import layertar

    image = store.image(ref)
    store.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=store.tmp, prefix="export-"))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir(mode=0o755)
        for i, (desc, diff_id) in enumerate(zip(image.layers, image.diff_ids, strict=True)):
            with store.open_blob(desc["digest"]) as f:
                stats = layertar.extract_layer(f, rootfs, whiteouts="apply")
            if stats.digest != desc["digest"] or stats.diff_id != diff_id:
                raise DigestMismatchError(
                    f"layer {i} ({desc['digest'][:19]}...) does not match its digests: "
                    "the store is corrupt; remove the image and pull it again"
                )
        with _output(out) as f:
            return layertar.create_layer(rootfs, f, overlay_whiteouts=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)

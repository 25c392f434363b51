"""The image store: content-addressed blobs, tags, and layers unpacked once and shared.

Everything an image is made of is a *blob* named by the sha256 of its bytes, under
``<state root>/images/blobs/sha256/<hex>``: a name that is also a checksum. A blob is hashed
while it is written (a wrong digest is never stored) and again when it is read. Tags map a
reference (``docker.io/library/busybox:latest``) to a manifest digest. Each layer is unpacked
once, into ``layers/sha256/<diff_id hex>``, and every image and container that has it shares
that directory as an overlayfs lower dir.

Nothing is counted by hand: ``gc`` marks what the tags (and the leases of running
containers) reach, and removes the rest, so removing an image never removes what another
image still uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from containerlab import paths
from containerlab.errors import DigestMismatchError, ImageError, ImageNotFoundError
from containerlab.image import oci
from containerlab.image.reference import Reference, parse

# Types for annotations only: importing typing costs every container start ~2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Image:
    """An image as the store knows it: its manifest, its config, its layers."""

    digest: str  # the manifest's digest: what a registry calls the image
    manifest: dict[str, Any]
    manifest_bytes: bytes
    config_digest: str  # Docker's "image id"
    config: dict[str, Any]
    layers: tuple[dict[str, Any], ...]  # layer descriptors, bottom first
    diff_ids: tuple[str, ...]  # sha256 of each layer's uncompressed tar, bottom first
    tags: tuple[str, ...] = ()  # references that point at this manifest

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def media_type(self) -> str:
        return str(self.manifest.get("mediaType", oci.OCI_MANIFEST))

    @property
    def size(self) -> int:
        """Compressed size of the layers, as `docker images` reports for a pulled image."""
        return sum(int(layer["size"]) for layer in self.layers)

    @property
    def run_config(self) -> dict[str, Any]:
        """The part of the config that says how to run it (Env, Entrypoint, Cmd...)."""
        return self.config.get("config") or {}


class BlobWriter:
    """Streams a blob to a temporary file while hashing it (see :meth:`Store.ingest`)."""

    def __init__(self, fileobj: BinaryIO):
        import hashlib  # OpenSSL's sha256, fast on megabytes; see containerlab/hashing.py

        self._file = fileobj
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)
        return len(data)


class Store:
    """The content-addressable image store under ``<state root>/images``."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else paths.state_root() / "images"
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers" / "sha256"
        self.tmp = self.root / "tmp"
        self.leases = self.root / "leases"
        self.tags_file = self.root / "repositories.json"

    # --- locking ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time for tags and garbage collection (CLI runs and kernels)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # --- blobs --------------------------------------------------------------------------------
    def _blob(self, digest: str) -> Path:
        return self.blobs / oci.check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self._blob(digest).is_file()

    def blob_path(self, digest: str) -> Path:
        p = self._blob(digest)
        if not p.is_file():
            raise ImageError(f"blob {digest[:19]}... is not in the store")
        return p

    def blob_size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def open_blob(self, digest: str) -> BinaryIO:
        """The raw blob file (to stream it somewhere; ``read_blob`` verifies, this does not)."""
        return open(self.blob_path(digest), "rb")

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, verified against its name: a corrupted store is caught here."""
        data = self.blob_path(digest).read_bytes()
        oci.verify(data, digest, "stored blob")
        return data

    def all_blobs(self) -> set[str]:
        if not self.blobs.is_dir():
            return set()
        return {f"sha256:{p.name}" for p in self.blobs.iterdir()}

    @contextlib.contextmanager
    def ingest(self, expected: str | None = None, size: int | None = None) -> Iterator[BlobWriter]:
        """Write a blob as a stream: hashed on the way, stored only if it is what it claims.

        ``with store.ingest("sha256:...") as w: w.write(chunk)``. On leaving the block the
        digest (and ``size``, if given) are checked; a mismatch raises
        ``DigestMismatchError`` and nothing is kept. The rename into place is atomic, so a
        reader never sees half a blob.
        """
        import tempfile

        if expected is not None:
            oci.check_digest(expected)
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="ingest-")
        try:
            with os.fdopen(fd, "wb") as f:
                writer = BlobWriter(f)
                yield writer
            digest = "sha256:" + writer._hash.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatchError(
                    f"blob {expected[:19]}... does not match its content (got {digest[:19]}..., "
                    f"{writer.size} bytes); it is corrupt or truncated: nothing was stored"
                )
            if size is not None and writer.size != size:
                raise DigestMismatchError(
                    f"blob {digest[:19]}... is {writer.size} bytes, expected {size}: "
                    "nothing was stored"
                )
            writer.digest = digest
            final = self._blob(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        """Store some bytes as a blob; returns its digest."""
        with self.ingest(expected, len(data)) as w:
            w.write(data)
        assert w.digest is not None
        return w.digest

    def copy_blob_from(
        self, src: BinaryIO, expected: str | None = None, size: int | None = None
    ) -> str:
        """Stream a file object into the store (archives, layouts)."""
        with self.ingest(expected, size) as w:
            while chunk := src.read(_CHUNK):
                w.write(chunk)
        assert w.digest is not None
        return w.digest

    # --- tags ---------------------------------------------------------------------------------
    def _read_tags(self) -> dict[str, str]:
        try:
            return json.loads(self.tags_file.read_text())
        except FileNotFoundError:
            return {}

    def _write_tags(self, tags: dict[str, str]) -> None:
        tmp = self.tags_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(tags, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.tags_file)  # atomic: no torn file if we are killed here

    def tags(self) -> dict[str, str]:
        """Every tag: full reference -> manifest digest."""
        return self._read_tags()

    def tag(self, ref: str | Reference, manifest_digest: str) -> None:
        """Point ``ref`` at a manifest already in the store."""
        r = parse(ref) if isinstance(ref, str) else ref
        if r.digest and not r.tag:
            return  # a digest reference names content: nothing to record
        self.blob_path(manifest_digest)
        with self.locked():
            tags = self._read_tags()
            tags[str(r.with_tag(r.tag or "latest"))] = manifest_digest
            self._write_tags(tags)

    def resolve(self, ref: str | Reference) -> str:
        """The manifest digest a reference (or a manifest digest, or an image id prefix) names."""
        text = str(ref)
        tags = self._read_tags()
        # A manifest digest names an image whether tagged or not (build steps are not).
        if (
            isinstance(ref, str)
            and ref.startswith("sha256:")
            and len(ref) == 71
            and self.has_blob(ref)
            and b'"layers"' in self.blob_path(ref).read_bytes()
        ):
            return ref
        if isinstance(ref, str) and (ref.startswith("sha256:") or _is_hex_prefix(ref)):
            found = self._by_id_prefix(ref.removeprefix("sha256:"), tags)
            if found:
                return found
        r = parse(text) if isinstance(ref, str) else ref
        if r.digest:
            if self.has_blob(r.digest):
                return r.digest
        elif str(r) in tags:
            return tags[str(r)]
        raise ImageNotFoundError(
            f"image '{r.familiar}' not found; run `containerlab images` to see what is here, "
            f"or `containerlab pull {r.familiar}`"
        )

    def _by_id_prefix(self, prefix: str, tags: dict[str, str]) -> str | None:
        """Docker lets you name an image by the start of its id (config digest)."""
        if len(prefix) < 4:
            return None
        matches = set()
        for manifest_digest in set(tags.values()):
            if manifest_digest.removeprefix("sha256:").startswith(prefix):
                matches.add(manifest_digest)
                continue
            try:
                config = json.loads(self.blob_path(manifest_digest).read_bytes())["config"]
            except (ImageError, KeyError, ValueError):
                continue
            if config["digest"].removeprefix("sha256:").startswith(prefix):
                matches.add(manifest_digest)
        if len(matches) > 1:
            raise ImageError(f"image id prefix '{prefix}' is ambiguous; give more characters")
        return matches.pop() if matches else None

    # --- images -------------------------------------------------------------------------------
    def add_image(self, manifest: bytes, ref: str | Reference | None = None) -> str:
        """Store a manifest whose config and layers are already blobs here, and tag it.

        Checked first: the manifest parses, its config exists and parses, every layer blob
        exists, and the config lists one diff_id per layer. A broken image adds nothing.
        """
        doc = oci.parse_manifest(manifest)
        config = oci.parse_config(self.read_blob(_need(self, doc["config"]["digest"], "config")))
        for i, layer in enumerate(doc["layers"]):
            _need(self, layer["digest"], f"layer {i}")
        if len(config["rootfs"]["diff_ids"]) != len(doc["layers"]):
            raise ImageError(
                f"the config lists {len(config['rootfs']['diff_ids'])} diff_ids for "
                f"{len(doc['layers'])} layers"
            )
        digest = self.write_blob(manifest)
        if ref is not None:
            self.tag(ref, digest)
        return digest

    def put_image(
        self,
        config: dict[str, Any],
        layers: list[dict[str, Any]],
        ref: str | Reference | None = None,
    ) -> str:
        """Store a config document, wrap it with ``layers`` (already blobs here) in an OCI
        manifest, and add the image; returns the manifest digest."""
        config_bytes = oci.dumps(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": {
                "mediaType": oci.OCI_CONFIG,
                "digest": self.write_blob(config_bytes),
                "size": len(config_bytes),
            },
            "layers": list(layers),
        }
        return self.add_image(oci.dumps(manifest), ref)

    def image(self, ref: str | Reference) -> Image:
        """Load an image by reference, manifest digest or image id prefix."""
        digest = self.resolve(ref)
        raw = self.read_blob(digest)
        manifest = oci.parse_manifest(raw)
        config_digest = manifest["config"]["digest"]
        config = oci.parse_config(self.read_blob(config_digest))
        tags = tuple(sorted(t for t, d in self._read_tags().items() if d == digest))
        return Image(
            digest,
            manifest,
            raw,
            config_digest,
            config,
            tuple(manifest["layers"]),
            tuple(config["rootfs"]["diff_ids"]),
            tags,
        )

    def images(self) -> list[Image]:
        """Every tagged image (one entry per manifest, with all its tags)."""
        out = []
        for digest in sorted(set(self._read_tags().values())):
            with contextlib.suppress(ImageError):
                out.append(self.image(digest))
        return out

    # --- layers -------------------------------------------------------------------------------
    def layer_path(self, diff_id: str) -> Path:
        return self.layers_dir / oci.check_digest(diff_id).split(":", 1)[1]

    def unpack_layer(self, descriptor: dict[str, Any], diff_id: str) -> Path:
        """The layer unpacked as an overlayfs lower dir; done once, then shared.

        Unpacked into a temporary directory and renamed into place, so a failure (a hostile
        or corrupt archive) leaves nothing, and two concurrent unpacks cannot mix.
        """
        final = self.layer_path(diff_id)
        if final.is_dir():
            return final
        import tempfile  # only here and in ingest: a container start only looks the layer up

        from containerlab import layertar

        self.layers_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self.layers_dir, prefix=".unpack-"))
        try:
            with self.open_blob(descriptor["digest"]) as f:
                stats = layertar.extract_layer(f, work)
            if stats.digest != descriptor["digest"]:
                raise DigestMismatchError(
                    f"layer {descriptor['digest'][:19]}... does not match its content: "
                    "the store is corrupt; remove the image and pull it again"
                )
            if stats.diff_id != diff_id:
                raise DigestMismatchError(
                    f"layer {descriptor['digest'][:19]}... unpacks to {stats.diff_id[:19]}..., "
                    f"but the config says {diff_id[:19]}...: refusing the image"
                )
            os.chmod(work, 0o755)
            try:
                os.rename(work, final)
            except OSError:
                if not final.is_dir():  # lost a race to an identical unpack: fine
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return final

    def layer_dirs(self, image: Image) -> list[Path]:
        """The image's layers as directories, bottom first (unpacked on first use)."""
        return [
            self.unpack_layer(d, diff_id)
            for d, diff_id in zip(image.layers, image.diff_ids, strict=True)
        ]

    # --- leases: what running containers use ------------------------------------------------
    def hold(self, holder: str, image: Image) -> None:
        """Keep an image's blobs and layers from garbage collection until ``release``.

        A container holds its image from ``create`` to ``rm``: removing the image's tag
        then removes only the name, not what the container runs on.
        """
        self.leases.mkdir(parents=True, exist_ok=True)
        (self.leases / holder).write_text(image.digest + "\n")

    def release(self, holder: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.leases / holder).unlink()

    def holders(self) -> dict[str, str]:
        """Every lease: holder (a container id) -> the manifest digest it holds."""
        if not self.leases.is_dir():
            return {}
        return {
            p.name: p.read_text().strip()
            for p in self.leases.iterdir()
            if not p.name.startswith("pending-")
        }

    @contextlib.contextmanager
    def lease(self, holder: str, image: Image) -> Iterator[None]:
        """``hold`` for the duration of a ``with`` block."""
        self.hold(holder, image)
        try:
            yield
        finally:
            self.release(holder)

    @contextlib.contextmanager
    def pending(self) -> Iterator[None]:
        """Protect the blobs written from now on while an image is being assembled.

        A pull or a load writes blobs first and tags the image last; a concurrent ``gc`` in
        between would see untagged blobs and remove them. While this is held, ``gc`` spares
        every blob newer than it. A holder that died (its pid is gone) protects nothing.
        """
        self.leases.mkdir(parents=True, exist_ok=True)
        path = self.leases / f"pending-{os.getpid()}-{os.urandom(4).hex()}"
        path.write_text(f"pending {os.getpid()}\n")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _pending_since(self) -> float | None:
        """The start of the oldest live pending operation (removing dead ones' files)."""
        oldest = None
        if not self.leases.is_dir():
            return None
        for p in self.leases.glob("pending-*"):
            pid = int(p.name.split("-")[1])
            if not _running(pid):
                p.unlink(missing_ok=True)
                continue
            t = p.stat().st_mtime
            oldest = t if oldest is None else min(oldest, t)
        return oldest

    # --- removal ------------------------------------------------------------------------------
    def untag(self, ref: str | Reference) -> str:
        """Remove one tag; returns the manifest digest it pointed at."""
        r = parse(ref) if isinstance(ref, str) else ref
        with self.locked():
            tags = self._read_tags()
            key = str(r)
            if key not in tags:
                raise ImageNotFoundError(
                    f"image '{r.familiar}' not found; run `containerlab images` to see the tags"
                )
            digest = tags.pop(key)
            self._write_tags(tags)
        return digest

    def gc(self) -> dict[str, int]:
        """Remove every blob and unpacked layer that no tag and no lease reaches."""
        with self.locked():
            roots = set(self._read_tags().values())
            roots |= set(self.holders().values())
            since = self._pending_since()
            keep_blobs: set[str] = set()
            keep_layers: set[str] = set()
            for digest in roots:
                try:
                    manifest = json.loads(self.blob_path(digest).read_bytes())
                    config_digest = manifest["config"]["digest"]
                    config = json.loads(self.blob_path(config_digest).read_bytes())
                except (ImageError, KeyError, ValueError):
                    continue
                keep_blobs |= {digest, config_digest, *(la["digest"] for la in manifest["layers"])}
                keep_layers |= set(config["rootfs"]["diff_ids"])
            removed_blobs = 0
            for blob in self.all_blobs() - keep_blobs:
                path = self._blob(blob)
                if since is not None and path.stat().st_mtime >= since - 1:
                    continue  # written by a pull or load that has not tagged it yet
                path.unlink()
                removed_blobs += 1
            removed_layers = 0
            if self.layers_dir.is_dir():
                for d in self.layers_dir.iterdir():
                    # ".unpack-*" is another process's unpack in progress: not ours to remove.
                    if not d.name.startswith(".") and f"sha256:{d.name}" not in keep_layers:
                        shutil.rmtree(d)
                        removed_layers += 1
        return {"blobs": removed_blobs, "layers": removed_layers}


def _need(store: Store, digest: str, what: str) -> str:
    if not store.has_blob(digest):
        raise ImageError(
            f"the manifest's {what} {digest[:19]}... is not in the store; "
            "the image is incomplete: pull or load it again"
        )
    return digest


def _running(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie has: only its wait is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _is_hex_prefix(text: str) -> bool:
    return 4 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)

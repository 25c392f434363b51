"""The OCI image format (and Docker's v2 format, its twin): media types and validation.

An image is a small tree of JSON documents and blobs, each named by the sha256 of its bytes:

    index (optional: one entry per platform)
      └── manifest: which config, which layers, in order
            ├── config: how to run it (Env, Entrypoint, Cmd...), and the diff_ids of the layers
            └── layers: tar archives (usually gzipped), applied bottom first

These functions parse the JSON and refuse what is malformed, with a message that names the
document and the problem, so a broken image is stopped before anything is written.
"""

from __future__ import annotations

import json
import re

from containerlab.errors import DigestMismatchError, ImageError
from containerlab.hashing import sha256_hex

TYPE_CHECKING = False  # typing costs 2 ms to import on every container start
if TYPE_CHECKING:
    from typing import Any

# --- media types ----------------------------------------------------------------------------
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER)
GZIP_LAYER_TYPES = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER)

#: What to send as Accept to a registry: every manifest kind we understand. Leaving one out
#: makes the registry 404 (OCI) or down-convert to schema 1 with another digest (Docker).
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

#: The annotation an OCI layout's index.json uses for a tag.
REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


# --- digests --------------------------------------------------------------------------------
def digest_of(data: bytes) -> str:
    """The content address of some bytes: ``sha256:<64 hex>``."""
    return "sha256:" + sha256_hex(data)


def check_digest(digest: str) -> str:
    """Validate a digest string (only sha256, the one every registry uses) and return it."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"invalid digest {digest!r}: expected sha256: and 64 lower-case hex")
    return digest


def verify(data: bytes, expected: str, what: str = "blob") -> None:
    """Raise ``DigestMismatchError`` unless ``data`` hashes to ``expected``."""
    actual = digest_of(data)
    if actual != expected:
        raise DigestMismatchError(
            f"{what} {expected[:19]}... does not match its content (got {actual[:19]}...); "
            "it is corrupt or was tampered with: nothing was stored"
        )


# --- documents ------------------------------------------------------------------------------
def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} must be a JSON object, not {type(doc).__name__}")
    return doc


def check_descriptor(d: Any, what: str, allowed: tuple[str, ...] | None = None) -> dict:
    """A descriptor points at a blob: ``{mediaType, digest, size}``."""
    if not isinstance(d, dict):
        raise ImageError(f"{what} must be a descriptor object")
    for key in ("mediaType", "digest", "size"):
        if key not in d:
            raise ImageError(f"{what} has no {key!r}")
    check_digest(d["digest"])
    if not isinstance(d["size"], int) or d["size"] < 0:
        raise ImageError(f"{what} has an invalid size {d['size']!r}")
    if allowed is not None and d["mediaType"] not in allowed:
        raise ImageError(
            f"{what} has media type {d['mediaType']!r}; expected one of {', '.join(allowed)}"
        )
    return d


def media_type_of(data: bytes) -> str:
    """The ``mediaType`` a manifest or index declares (OCI allows leaving it out)."""
    doc = _load(data, "manifest")
    if "mediaType" in doc:
        return str(doc["mediaType"])
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(data: bytes, media_type: str | None = None) -> dict[str, Any]:
    """Validate an image manifest (OCI or Docker v2 schema 2) and return it."""
    doc = _load(data, "manifest")
    declared = doc.get("mediaType", media_type or OCI_MANIFEST)
    if declared in INDEX_TYPES or "manifests" in doc:
        raise ImageError("expected an image manifest but got an index (a multi-platform list)")
    if declared not in MANIFEST_TYPES:
        raise ImageError(
            f"unsupported manifest media type {declared!r}"
            + (
                " (schema 1 is obsolete)"
                if "schemaVersion" in doc and doc.get("schemaVersion") == 1
                else ""
            )
        )
    if media_type and media_type in MANIFEST_TYPES and media_type != declared:
        raise ImageError(f"manifest served as {media_type!r} declares {declared!r}")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"manifest schemaVersion must be 2, not {doc.get('schemaVersion')!r}")
    check_descriptor(doc.get("config"), "manifest config", CONFIG_TYPES)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest has no 'layers' list")
    for i, layer in enumerate(layers):
        check_descriptor(layer, f"manifest layer {i}", LAYER_TYPES)
        if layer["mediaType"] == OCI_LAYER_ZSTD:
            raise ImageError(f"manifest layer {i} is zstd-compressed: not supported yet")
    return doc


def parse_index(data: bytes) -> dict[str, Any]:
    """Validate an image index / manifest list and return it."""
    doc = _load(data, "index")
    declared = doc.get("mediaType", OCI_INDEX)
    if declared not in INDEX_TYPES:
        raise ImageError(f"unsupported index media type {declared!r}")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"index schemaVersion must be 2, not {doc.get('schemaVersion')!r}")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError("index has no 'manifests' list")
    for i, m in enumerate(manifests):
        check_descriptor(m, f"index entry {i}")
    return doc


def parse_config(data: bytes) -> dict[str, Any]:
    """Validate an image config: the rootfs diff_ids and the run settings."""
    doc = _load(data, "image config")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageError("image config has no rootfs of type 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageError("image config has no rootfs.diff_ids list")
    for d in diff_ids:
        check_digest(d)
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise ImageError("image config 'config' must be an object")
    for key in ("Env", "Entrypoint", "Cmd"):
        value = cfg.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise ImageError(f"image config {key} must be a list of strings")
    return doc


def platform_of(descriptor: dict) -> str:
    """``os/arch[/variant]`` of an index entry, e.g. ``linux/arm64/v8``."""
    p = descriptor.get("platform") or {}
    out = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    if p.get("variant"):
        out += f"/{p['variant']}"
    return out


def host_platform() -> str:
    """This machine's platform in OCI words (Python says x86_64/aarch64, OCI amd64/arm64)."""
    import platform

    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}.get(
        machine, machine
    )
    return f"linux/{arch}" + ("/v8" if arch == "arm64" else "")


def select_platform(index: dict, wanted: str | None = None) -> dict:
    """The index entry for ``wanted`` (default: this machine); an error lists what exists."""
    wanted = wanted or host_platform()
    w_os, w_arch, *rest = wanted.split("/")
    w_variant = rest[0] if rest else None
    candidates = []
    for m in index["manifests"]:
        p = m.get("platform") or {}
        if p.get("os") == w_os and p.get("architecture") == w_arch:
            candidates.append(m)
    if w_variant:
        exact = [m for m in candidates if (m.get("platform") or {}).get("variant") == w_variant]
        # arm64 images often omit the variant: v8 is the only one.
        candidates = exact or [
            m for m in candidates if not (m.get("platform") or {}).get("variant")
        ]
    if not candidates:
        have = ", ".join(sorted({platform_of(m) for m in index["manifests"]})) or "none"
        raise ImageError(
            f"no image for platform {wanted} in this index; it has: {have} "
            "(choose one with --platform)"
        )
    return candidates[0]


def dumps(doc: dict) -> bytes:
    """Canonical-enough JSON for documents we write ourselves (stable digests)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

"""sha256 of small things (a manifest, a config, a name) without loading OpenSSL.

``import hashlib`` loads OpenSSL's libcrypto, about 5 ms on a small VM: more than a tenth of
a container start, which only hashes a few kilobytes (the manifest and config it verifies,
the names of its veth and bridge). CPython also has its own sha256, built in; it is slower
on megabytes, so layers and blobs (``layertar``, ``image.store``) keep using hashlib.
"""

from __future__ import annotations

try:
    from _sha256 import sha256  # CPython 3.11's built-in module
except ImportError:  # pragma: no cover - other versions
    try:
        from _sha2 import sha256  # type: ignore[no-redef]  # CPython >= 3.12
    except ImportError:
        from hashlib import sha256  # type: ignore[no-redef,assignment]


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data``, as 64 hex digits (what ``hashlib.sha256(data).hexdigest()``
    returns)."""
    return sha256(data).hexdigest()

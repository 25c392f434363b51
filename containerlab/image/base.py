"""The offline base image: ``busybox``, built from the host's busybox-static.

No registry is needed to start learning: the busybox root filesystem from ``rootfs`` is
packed into one deterministic layer (sorted entries, fixed timestamps and ids, gzip without a
timestamp), wrapped in an OCI config and manifest, and stored like any pulled image. The
same busybox package gives the same bytes, hence the same digests, on every machine.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

from containerlab import rootfs
from containerlab.errors import ImageNotFoundError
from containerlab.image import oci
from containerlab.image.store import Store

BASE_REF = "busybox:latest"
EPOCH = "1970-01-01T00:00:00Z"  # fixed, so the config (and the image id) never changes
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def busybox_version() -> str:
    """``BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1)``, the first line of its help."""
    out = subprocess.run([str(rootfs.find_busybox())], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].split(" multi-call")[0].strip()


def build_base_image(store: Store, ref: str = BASE_REF) -> str:
    """Build the busybox image into ``store`` and tag it; returns the manifest digest."""
    from containerlab import layertar

    store.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=store.tmp, prefix="base-"))
    try:
        tree = rootfs.build_busybox_rootfs(work / "rootfs")
        layer_file = work / "layer.tar.gz"
        with open(layer_file, "wb") as f:
            layer = layertar.create_layer(tree, f, overlay_whiteouts=False, gzip=True, mtime=0)
        with open(layer_file, "rb") as f:
            store.copy_blob_from(f, expected=layer.digest, size=layer.size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    arch = oci.host_platform().split("/")[1]
    config = {
        "created": EPOCH,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [
            {
                "created": EPOCH,
                "created_by": f"containerlab: busybox-static from the host ({busybox_version()})",
            }
        ],
    }
    layers = [{"mediaType": oci.OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}]
    return store.put_image(config, layers, ref)


def ensure_base_image(store: Store | None = None) -> str:
    """The busybox image's manifest digest, building it first if this store has none.

    Serialised with a lock of its own, so concurrent first runs build it once.
    """
    store = store or Store()
    try:
        return store.resolve(BASE_REF)
    except ImageNotFoundError:
        pass
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return store.resolve(BASE_REF)
        except ImageNotFoundError:
            return build_base_image(store)

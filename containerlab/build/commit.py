"""``commit`` and ``diff``: a container's writable layer, seen as changes or kept as an image.

Everything a container changed is in its overlay's upper directory: new and modified files
as themselves, deleted ones as whiteouts. ``diff`` lists them (A/C/D, as ``docker diff``);
``commit`` packs that directory as one more layer on top of the container's image, exactly
what the builder does for each ``RUN``.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

from containerlab import layers
from containerlab.image import oci
from containerlab.image.store import Store
from containerlab.runtime import lifecycle, state


def diff(name_or_id: str) -> list[layers.Change]:
    """What the container changed relative to its image, sorted by path."""
    rec = lifecycle.get(name_or_id)
    store = Store()
    lowers = store.layer_dirs(store.image(rec.config["image_digest"]))
    return layers.diff(rec.dir / "upper", lowers)


def run_config_of(rec: state.Record, image_config: dict[str, Any]) -> dict[str, Any]:
    """The image's run config, updated with what the container was run with (env, command)."""
    cfg = copy.deepcopy(image_config)
    cfg["Env"] = [f"{k}={v}" for k, v in rec.config.get("env", {}).items() if k != "HOSTNAME"]
    entrypoint = list(cfg.get("Entrypoint") or [])
    argv = list(rec.config["argv"])
    if argv[: len(entrypoint)] == entrypoint:
        cfg["Cmd"] = argv[len(entrypoint) :]
    else:
        cfg["Entrypoint"], cfg["Cmd"] = None, argv
    if rec.config.get("workdir"):
        cfg["WorkingDir"] = rec.config["workdir"]
    if rec.config.get("user"):
        cfg["User"] = rec.config["user"]
    return cfg


def commit(
    name_or_id: str,
    ref: str | None = None,
    *,
    message: str = "",
    author: str = "",
    changes: dict[str, Any] | None = None,
) -> str:
    """A new image: the container's image plus its upper dir as a layer; returns the
    manifest digest (tagged ``ref`` when given)."""
    rec = lifecycle.get(name_or_id)
    store = Store()
    image = store.image(rec.config["image_digest"])
    store.tmp.mkdir(parents=True, exist_ok=True)
    with store.pending(), tempfile.TemporaryDirectory(dir=store.tmp) as tmp:
        blob = os.path.join(tmp, "layer.tar.gz")
        with open(blob, "wb") as f:
            layer = layers.diff_tar(rec.dir / "upper", f, gzip=True)
        with open(blob, "rb") as f:
            store.copy_blob_from(f, expected=layer.digest, size=layer.size)
        created = state.now()
        config = copy.deepcopy(image.config)
        config["created"] = created
        if author:
            config["author"] = author
        config["config"] = run_config_of(rec, image.run_config)
        config["config"].update(changes or {})
        config["rootfs"] = {"type": "layers", "diff_ids": [*image.diff_ids, layer.diff_id]}
        entry = {"created": created, "created_by": f"containerlab commit {rec.name}"}
        if message:
            entry["comment"] = message
        config["history"] = [*image.config.get("history", []), entry]
        layer_desc = {"mediaType": oci.OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
        return store.put_image(config, [*image.layers, layer_desc], ref)

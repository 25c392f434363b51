"""Images as the builder grows them: one step at a time, each step an image of its own.

A build starts from a base image and applies instructions. Each one yields a new *snapshot*:
the layers so far, and a config. A filesystem step (RUN, COPY, ADD) adds a layer; a
metadata step (ENV, CMD, ...) changes only the config, recorded in the history as an
``empty_layer``. Every snapshot is stored as a real (untagged) image, so its config digest
names the state exactly: that is what the cache keys on, and what a RUN step's container
runs.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from containerlab.image import oci
from containerlab.image.store import Image, Store
from containerlab.runtime.state import now


@dataclass
class Snapshot:
    """The image being built, after some steps."""

    layers: list[dict[str, Any]] = field(default_factory=list)  # descriptors, bottom first
    config: dict[str, Any] = field(default_factory=dict)  # the whole image config document
    digest: str = ""  # manifest digest once stored ("" for scratch before any step)

    @classmethod
    def scratch(cls) -> Snapshot:
        arch = oci.host_platform().split("/")[1]
        return cls(
            [],
            {
                "architecture": arch,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            },
        )

    @classmethod
    def of(cls, image: Image) -> Snapshot:
        return cls(list(image.layers), copy.deepcopy(image.config), image.digest)

    @property
    def run(self) -> dict[str, Any]:
        """The run settings (``config.config``: Env, Cmd, Entrypoint, WorkingDir, User...)."""
        return self.config.setdefault("config", {})

    def env(self) -> dict[str, str]:
        out = {}
        for item in self.run.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def set_env(self, key: str, value: str) -> None:
        env = self.env()
        env[key] = value
        self.run["Env"] = [f"{k}={v}" for k, v in env.items()]

    def then(
        self,
        store: Store,
        created_by: str,
        *,
        layer: dict[str, Any] | None = None,
        diff_id: str | None = None,
    ) -> Snapshot:
        """The next snapshot: this one plus a history entry (and a layer), stored."""
        nxt = Snapshot(list(self.layers), copy.deepcopy(self.config))
        entry: dict[str, Any] = {"created": now(), "created_by": created_by}
        if layer is None:
            entry["empty_layer"] = True
        else:
            nxt.layers.append(layer)
            nxt.config["rootfs"]["diff_ids"] = [*nxt.config["rootfs"]["diff_ids"], diff_id]
        nxt.config["history"] = [*nxt.config.get("history", []), entry]
        nxt.config["created"] = entry["created"]
        nxt.store(store)
        return nxt

    def store(self, store: Store) -> str:
        self.digest = store.put_image(self.config, self.layers)
        return self.digest

    @property
    def config_digest(self) -> str:
        return oci.digest_of(oci.dumps(self.config))


def add_layer_file(
    store: Store, path: str | os.PathLike[str], digest: str, size: int
) -> dict[str, Any]:
    """Move a finished layer blob into the store; its descriptor."""
    with open(path, "rb") as f:
        store.copy_blob_from(f, expected=digest, size=size)
    return {"mediaType": oci.OCI_LAYER_GZIP, "digest": digest, "size": size}

#!/usr/bin/env python3
"""Benchmark: pulling and unpacking an image, and starting a container from it.

    sudo .venv/bin/python scripts/bench_images.py [--size-mb 32] [--layers 4] [--runs 5]

Builds a multi-layer image of random data on top of the offline busybox image, pushes it to
a real registry started on 127.0.0.1, then measures, side by side in one run:

1. pull + unpack: containerlab (``registry.pull`` into a fresh store, then every layer
   unpacked) against ``skopeo copy docker://... oci:DIR`` + ``umoci unpack`` of the same
   image. Each run starts from nothing (fresh store / fresh layout); order alternates.
2. container start: ``containerlab run --rm IMAGE true`` for the one-layer busybox image and
   for the multi-layer image, both already unpacked: what the extra layers cost.

Prints a table; nothing is asserted (performance is reported, never a timed test).
Everything lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "containerlab")


def build_image(store, ref: str, size_mb: int, n_layers: int) -> None:
    """busybox + n_layers layers of random files (incompressible: the worst case)."""
    from containerlab import layertar
    from containerlab.image import base, oci

    base.ensure_base_image(store)
    busybox = store.image("busybox")
    layers = list(busybox.layers)
    diff_ids = list(busybox.diff_ids)
    per_layer = size_mb * 1_000_000 // n_layers
    with tempfile.TemporaryDirectory(dir=store.tmp) as tmp:
        for i in range(n_layers):
            src = Path(tmp) / f"layer{i}"
            (src / f"data/layer{i}").mkdir(parents=True)
            remaining, j = per_layer, 0
            while remaining > 0:  # files from 4 kB to 1 MB, as real layers mix them
                n = min(remaining, 4096 << (j % 9))
                (src / f"data/layer{i}/f{j}").write_bytes(os.urandom(n))
                remaining -= n
                j += 1
            blob = Path(tmp) / f"layer{i}.tar.gz"
            with open(blob, "wb") as f:
                d = layertar.create_layer(src, f, overlay_whiteouts=False, gzip=True, mtime=0)
            with open(blob, "rb") as f:
                store.copy_blob_from(f, expected=d.digest)
            layers.append({"mediaType": oci.OCI_LAYER_GZIP, "digest": d.digest, "size": d.size})
            diff_ids.append(d.diff_id)
    config = dict(busybox.config)
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config.pop("history", None)
    config_bytes = oci.dumps(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {
            "mediaType": oci.OCI_CONFIG,
            "digest": store.write_blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": layers,
    }
    store.add_image(oci.dumps(manifest), ref)


def time_it(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=32, help="data in the extra layers (MB)")
    ap.add_argument("--layers", type=int, default=4, help="extra layers on top of busybox")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_images.py needs root (sudo)", file=sys.stderr)
        return 1
    for tool in ("skopeo", "umoci", "docker-registry"):
        if not shutil.which(tool):
            print(f"{tool} is missing: run scripts/setup.sh", file=sys.stderr)
            return 1

    work = Path(tempfile.mkdtemp(prefix="clab-bench-"))
    os.environ["CONTAINERLAB_ROOT"] = str(work / "clab")
    from containerlab.image import registry
    from containerlab.image.localregistry import local_registry
    from containerlab.image.store import Store

    try:
        with local_registry(work / "registry") as addr:
            ref = f"{addr}/bench/big:1"
            store = Store()
            build_image(store, ref, args.size_mb, args.layers)
            image = store.image(ref)
            registry.push(ref, store)
            total = sum(int(la["size"]) for la in image.layers)
            print(
                f"image: busybox + {args.layers} layers, {total / 1e6:.1f} MB compressed, "
                f"{len(image.layers)} layers; registry on {addr}"
            )

            ours, theirs = [], []
            for i in range(args.runs):

                def clab_pull(i: int = i) -> None:
                    fresh = Store(work / f"pull{i}")
                    registry.pull(ref, fresh)
                    fresh.layer_dirs(fresh.image(ref))

                def skopeo_umoci(i: int = i) -> None:
                    layout = work / f"layout{i}"
                    run(
                        [
                            "skopeo",
                            "copy",
                            "--quiet",
                            "--src-tls-verify=false",
                            f"docker://{ref}",
                            f"oci:{layout}:1",
                        ]
                    )
                    run(["umoci", "unpack", "--image", f"{layout}:1", str(work / f"bundle{i}")])

                pair = [(ours, clab_pull), (theirs, skopeo_umoci)]
                for bucket, fn in pair if i % 2 == 0 else reversed(pair):
                    bucket.append(time_it(fn))
                for name in (f"pull{i}", f"layout{i}", f"bundle{i}"):
                    shutil.rmtree(work / name, ignore_errors=True)

            # Container starts from already-unpacked images (the default store).
            store.layer_dirs(image)
            starts: dict[str, list[float]] = {"busybox": [], ref: []}
            for _ in range(max(args.runs, 10)):
                for name in starts:
                    starts[name].append(
                        time_it(lambda n=name: run([CLI, "run", "--rm", n, "true"]))
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f})"

    print()
    print("| measurement | median (min) |")
    print("|---|---|")
    print(f"| pull + unpack, containerlab | {ms(ours)} |")
    print(f"| pull + unpack, skopeo copy + umoci unpack | {ms(theirs)} |")
    print(f"| run --rm busybox true (1 layer) | {ms(starts['busybox'])} |")
    print(f"| run --rm big true ({len(image.layers)} layers) | {ms(starts[ref])} |")
    extra = statistics.median(starts[ref]) - statistics.median(starts["busybox"])
    print(f"\nextra layers cost at start: {extra * 1000:+.1f} ms (median difference)")
    print(
        f"containerlab pull+unpack vs skopeo+umoci: "
        f"{statistics.median(ours) / statistics.median(theirs):.2f}x the time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

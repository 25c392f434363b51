"""The image store: verified blobs, tags, shared layers, garbage collection."""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import os
import tarfile

import pytest

from containerlab.errors import DigestMismatchError, ImageError, ImageNotFoundError
from containerlab.image import oci
from containerlab.image.store import Store


def layer_tar(files: dict[str, bytes], *, compress: bool = True) -> tuple[bytes, str]:
    """A small layer: (blob bytes, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    blob = gzip.compress(raw, mtime=0) if compress else raw
    return blob, oci.digest_of(raw)


def make_image(
    store: Store, ref: str | None, layers: list[dict[str, bytes]], cmd: tuple[str, ...] = ("sh",)
) -> str:
    descs, diff_ids = [], []
    for files in layers:
        blob, diff_id = layer_tar(files)
        descs.append(
            {"mediaType": oci.OCI_LAYER_GZIP, "digest": store.write_blob(blob), "size": len(blob)}
        )
        diff_ids.append(diff_id)
    config = oci.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    )
    manifest = oci.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": {
                "mediaType": oci.OCI_CONFIG,
                "digest": store.write_blob(config),
                "size": len(config),
            },
            "layers": descs,
        }
    )
    return store.add_image(manifest, ref)


def test_blobs_are_named_by_their_content(tmp_path):
    store = Store(tmp_path)
    d = store.write_blob(b"hello")
    assert d == oci.digest_of(b"hello")
    assert store.read_blob(d) == b"hello"
    assert (tmp_path / "blobs/sha256" / d[7:]).stat().st_mode & 0o777 == 0o444


def test_a_wrong_digest_stores_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(DigestMismatchError, match="nothing was stored"):
        store.write_blob(b"evil", expected=oci.digest_of(b"good"))
    assert store.all_blobs() == set()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_truncated_stream_stores_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(DigestMismatchError), store.ingest(oci.digest_of(b"0123456789"), 10) as w:
        w.write(b"01234")
    assert store.all_blobs() == set()


def test_a_corrupted_blob_is_caught_on_read(tmp_path):
    store = Store(tmp_path)
    d = store.write_blob(b"original")
    path = store.blob_path(d)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError):
        store.read_blob(d)


def test_tags_resolve_and_images_load(tmp_path):
    store = Store(tmp_path)
    digest = make_image(store, "app:1", [{"a": b"1"}, {"b": b"2"}])
    assert store.resolve("app:1") == digest
    assert store.resolve("docker.io/library/app:1") == digest
    image = store.image("app:1")
    assert image.tags == ("docker.io/library/app:1",)
    assert len(image.layers) == len(image.diff_ids) == 2
    assert store.resolve(image.id[7:19]) == digest  # an image id prefix, as Docker allows
    assert store.resolve(digest) == digest
    with pytest.raises(ImageNotFoundError, match="containerlab pull app:2"):
        store.resolve("app:2")


def test_add_image_refuses_incomplete_images(tmp_path):
    store = Store(tmp_path)
    missing = oci.digest_of(b"nowhere")
    manifest = oci.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": missing, "size": 7},
            "layers": [],
        }
    )
    with pytest.raises(ImageError, match=r"config .* is not in the store"):
        store.add_image(manifest, "broken:1")
    assert store.tags() == {}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (
            json.dumps({"schemaVersion": 1, "mediaType": oci.OCI_MANIFEST}).encode(),
            "schemaVersion must be 2",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "text/html"}).encode(),
            "unsupported manifest media type",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": oci.OCI_MANIFEST,
                    "config": {
                        "mediaType": oci.OCI_LAYER,
                        "digest": "sha256:" + "0" * 64,
                        "size": 1,
                    },
                    "layers": [],
                }
            ).encode(),
            "media type",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": oci.OCI_MANIFEST,
                    "config": {"mediaType": oci.OCI_CONFIG, "digest": "md5:abc", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "invalid digest",
        ),
    ],
)
def test_malformed_manifests_are_refused(tmp_path, doc, message):
    store = Store(tmp_path)
    with pytest.raises(ImageError, match=message):
        store.add_image(doc, "x:1")
    assert store.all_blobs() == set()


def test_gc_removes_only_what_no_tag_reaches(tmp_path):
    store = Store(tmp_path)
    shared = {"base": b"shared layer"}
    a = make_image(store, "a:1", [shared, {"a": b"only a"}])
    b = make_image(store, "b:1", [shared, {"b": b"only b"}])
    assert store.gc() == {"blobs": 0, "layers": 0}
    store.untag("a:1")
    store.gc()
    image_b = store.image("b:1")
    for layer in image_b.layers:
        assert store.has_blob(layer["digest"])  # the shared base layer survived
    assert not store.has_blob(a) and store.has_blob(b)
    store.untag("b:1")
    store.gc()
    assert store.all_blobs() == set()


def test_a_lease_keeps_an_untagged_image(tmp_path):
    store = Store(tmp_path)
    make_image(store, "c:1", [{"c": b"c"}])
    image = store.image("c:1")
    with store.lease("container-1", image):
        store.untag("c:1")
        store.gc()
        assert store.has_blob(image.digest)
    store.gc()
    assert not store.has_blob(image.digest)


def _tag_many(root: str, digest: str, worker: int) -> None:
    store = Store(root)
    for i in range(20):
        store.tag(f"t{worker}:{i}", digest)


def test_concurrent_tagging_loses_nothing(tmp_path):
    store = Store(tmp_path)
    digest = make_image(store, "base:1", [{"x": b"x"}])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tag_many, args=(str(tmp_path), digest, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(store.tags()) == 1 + 4 * 20


def test_gc_spares_blobs_of_a_pull_that_has_not_tagged_yet(tmp_path):
    store = Store(tmp_path)
    with store.pending():
        orphan = store.write_blob(b"layer of a pull in progress")
        store.gc()  # another process's `image prune`, right now
        assert store.has_blob(orphan)
    store.gc()
    assert not store.has_blob(orphan)  # the pull never tagged it: now it goes


def test_a_dead_pending_holder_protects_nothing(tmp_path):
    store = Store(tmp_path)
    orphan = store.write_blob(b"left by a killed pull")
    store.leases.mkdir(parents=True, exist_ok=True)
    (store.leases / "pending-999999999-dead").write_text("pending 999999999\n")
    store.gc()
    assert not store.has_blob(orphan)
    assert list(store.leases.iterdir()) == []


def test_an_untagged_image_resolves_by_its_manifest_digest(tmp_path):
    store = Store(tmp_path)
    digest = make_image(store, None, [{"f": b"x"}])
    assert store.resolve(digest) == digest
    layer = store.image(digest).layers[0]["digest"]
    with pytest.raises(ImageNotFoundError):
        store.image(layer)  # a layer digest is not an image

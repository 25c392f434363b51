"""Image archives: OCI layouts, docker save/load tars, import/export, against skopeo and umoci.

Test images are made by hand (tiny layer tars, a config, a manifest) in a store of the
test's own; interop runs the real tools on what we write and loads what they write.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from containerlab.errors import ContainerlabError, ImageError, LayerError
from containerlab.image import archive, oci
from containerlab.image.store import Store

SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
needs_umoci = pytest.mark.skipif(UMOCI is None, reason="umoci is not installed")


# --- building test images by hand ------------------------------------------------------------
def layer_tar(files: dict[str, bytes | None], *, dirs: tuple[str, ...] = ()) -> bytes:
    """A layer tar: ``None`` content is an empty whiteout-style marker file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data or b""), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_image(
    store: Store,
    ref: str | None,
    layers: list[bytes],
    *,
    gzipped: bool = True,
    arch: str = "amd64",
    cmd: list[str] | None = None,
) -> str:
    """Store an image whose layers are the given plain tars; returns its manifest digest."""
    descs = []
    for plain in layers:
        blob = gz(plain) if gzipped else plain
        descs.append(
            {
                "mediaType": oci.OCI_LAYER_GZIP if gzipped else oci.OCI_LAYER,
                "digest": store.write_blob(blob),
                "size": len(blob),
            }
        )
    config = oci.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": cmd or ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(p) for p in layers]},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {
            "mediaType": oci.OCI_CONFIG,
            "digest": store.write_blob(config),
            "size": len(config),
        },
        "layers": descs,
    }
    return store.add_image(oci.dumps(manifest), ref)


BASE = layer_tar({"etc/os-release": b"NAME=clab\n", "bin/hello": b"#!/bin/sh\necho hi\n"},
                 dirs=("etc", "bin"))  # fmt: skip
TOP = layer_tar({"app/main.txt": b"main\n"}, dirs=("app",))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    add_image(s, "example.com/team/app:1.0", [BASE, TOP])
    add_image(s, "busybox:latest", [BASE], gzipped=False, cmd=["sh"])
    return s


def snapshot(s: Store) -> tuple[set[str], dict[str, str], list[str]]:
    tmp = sorted(p.name for p in s.tmp.iterdir()) if s.tmp.is_dir() else []
    return s.all_blobs(), s.tags(), tmp


def run(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"{cmd} failed: {res.stderr}"
    return res.stdout


# --- OCI image layout --------------------------------------------------------------------------
def test_oci_layout_round_trip(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    refs = ["example.com/team/app:1.0", "busybox", "busybox:latest"]
    digests = archive.save_oci_layout(store, refs, layout)[:2]
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    names = [m["annotations"] for m in index["manifests"]]
    assert names == [
        {oci.REF_NAME: "1.0", archive.CONTAINERD_NAME: "example.com/team/app:1.0"},
        {oci.REF_NAME: "latest", archive.CONTAINERD_NAME: "docker.io/library/busybox:latest"},
    ]
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert sha(blob.read_bytes()) == f"sha256:{blob.name}"

    fresh = Store(tmp_path / "fresh")
    loaded = archive.load_oci_layout(fresh, layout)
    assert loaded == digests
    assert fresh.tags() == store.tags()
    assert fresh.all_blobs() == store.all_blobs()
    for ref in ("example.com/team/app:1.0", "busybox"):
        assert fresh.image(ref).manifest_bytes == store.image(ref).manifest_bytes

    # Saving again into the same layout replaces the entry of the same name, keeps others.
    add_image(store, "busybox:latest", [TOP])
    archive.save_oci_layout(store, ["busybox"], layout)
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digests[0], store.resolve("busybox")]


def test_oci_layout_ref_picks_and_names(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    archive.save_oci_layout(store, ["example.com/team/app:1.0", "busybox"], layout)
    fresh = Store(tmp_path / "fresh")
    [digest] = archive.load_oci_layout(fresh, layout, ref="busybox:latest")
    assert digest == store.resolve("busybox")
    assert fresh.tags() == {"docker.io/library/busybox:latest": digest}
    with pytest.raises(ImageError, match="no image named 'nothere:9'"):
        archive.load_oci_layout(fresh, layout, ref="nothere:9")


def test_oci_layout_refuses_non_layouts(store: Store, tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(ImageError, match="not an OCI image layout"):
        archive.save_oci_layout(store, ["busybox"], tmp_path / "junk")
    with pytest.raises(ImageError, match="no oci-layout file"):
        archive.load_oci_layout(store, tmp_path / "junk")
    with pytest.raises(ContainerlabError, match="not found"):
        archive.save_oci_layout(store, ["nothere"], tmp_path / "new")
    assert not (tmp_path / "new").exists()


def _layout_blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


@pytest.mark.parametrize("damage", ["corrupt layer", "symlinked blob", "diff_id", "missing"])
def test_oci_layout_hostile(store: Store, tmp_path: Path, damage: str) -> None:
    layout = tmp_path / "layout"
    archive.save_oci_layout(store, ["example.com/team/app:1.0"], layout)
    image = store.image("example.com/team/app:1.0")
    top = _layout_blob(layout, image.layers[1]["digest"])
    if damage == "corrupt layer":
        top.chmod(0o644)
        top.write_bytes(gz(layer_tar({"app/main.txt": b"evil\n"})))
        match = "does not match its content|bytes"
    elif damage == "symlinked blob":
        outside = tmp_path / "outside"
        outside.write_bytes(top.read_bytes())
        top.unlink()
        top.symlink_to(outside)
        match = "symlink"
    elif damage == "missing":
        top.unlink()
        match = "missing"
    else:
        # A consistent manifest whose layer is not the tar the config names.
        wrong = gz(layer_tar({"app/other.txt": b"x\n"}))
        _layout_blob(layout, sha(wrong)).write_bytes(wrong)
        manifest = json.loads(image.manifest_bytes)
        manifest["layers"][1] = {**manifest["layers"][1], "digest": sha(wrong), "size": len(wrong)}
        data = oci.dumps(manifest)
        _layout_blob(layout, sha(data)).write_bytes(data)
        index = json.loads((layout / "index.json").read_text())
        index["manifests"][0].update(digest=sha(data), size=len(data))
        (layout / "index.json").write_text(json.dumps(index))
        match = "unpacks to"
    fresh = Store(tmp_path / "fresh")
    add_image(fresh, "other:1", [BASE])
    before = snapshot(fresh)
    with pytest.raises(ImageError, match=match):
        archive.load_oci_layout(fresh, layout)
    assert snapshot(fresh) == before


def test_oci_layout_nested_index_selects_platform(tmp_path: Path) -> None:
    src = Store(tmp_path / "src")
    amd = add_image(src, "multi:amd64", [BASE], arch="amd64")
    arm = add_image(src, "multi:arm64", [TOP], arch="arm64")
    layout = tmp_path / "layout"
    archive.save_oci_layout(src, ["multi:amd64", "multi:arm64"], layout)
    entries = {}
    amd64 = {"os": "linux", "architecture": "amd64"}
    arm64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    for digest, plat in ((amd, amd64), (arm, arm64)):
        entries[digest] = {"mediaType": oci.OCI_MANIFEST, "digest": digest,
                           "size": src.blob_size(digest), "platform": plat}  # fmt: skip
    nested = oci.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                        "manifests": list(entries.values())})  # fmt: skip
    _layout_blob(layout, sha(nested)).write_bytes(nested)
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": oci.OCI_INDEX, "digest": sha(nested), "size": len(nested),
         "annotations": {oci.REF_NAME: "multi"}}]}  # fmt: skip
    (layout / "index.json").write_text(json.dumps(index))

    fresh = Store(tmp_path / "fresh")
    assert archive.load_oci_layout(fresh, layout, ref="multi", platform="linux/arm64") == [arm]
    assert archive.load_oci_layout(fresh, layout, ref="multi", platform="linux/amd64") == [amd]
    assert fresh.tags() == {"docker.io/library/multi:latest": amd}
    with pytest.raises(ImageError, match="no image for platform linux/s390x"):
        archive.load_oci_layout(fresh, layout, ref="multi", platform="linux/s390x")
    # Only a short tag ("multi"): without ref there is no repository name to give it.
    with pytest.raises(ImageError, match="pass ref="):
        archive.load_oci_layout(fresh, layout)


# --- docker archive ---------------------------------------------------------------------------
def test_docker_archive_round_trip(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "images.tar"
    refs = ["example.com/team/app:1.0", "busybox", "docker.io/library/busybox:latest"]
    archive.save_docker_archive(store, refs, out)
    app, box = store.image(refs[0]), store.image("busybox")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
        assert manifest == [
            {
                "Config": app.config_digest.split(":")[1] + ".json",
                "RepoTags": ["example.com/team/app:1.0"],
                "Layers": [f"{d.split(':')[1]}/layer.tar" for d in app.diff_ids],
            },
            {
                "Config": box.config_digest.split(":")[1] + ".json",
                "RepoTags": ["docker.io/library/busybox:latest"],  # two refs, one tag
                "Layers": [f"{box.diff_ids[0].split(':')[1]}/layer.tar"],
            },
        ]
        assert repositories == {
            "example.com/team/app": {"1.0": app.diff_ids[1].split(":")[1]},
            "docker.io/library/busybox": {"latest": box.diff_ids[0].split(":")[1]},
        }
        # The gzip layers of the store are written uncompressed, named by diff_id.
        for path, diff_id in zip(manifest[0]["Layers"], app.diff_ids, strict=True):
            assert sha(tar.extractfile(path).read()) == diff_id
    # Deterministic: the same images make the same bytes.
    again = io.BytesIO()
    archive.save_docker_archive(store, refs, again)
    assert again.getvalue() == out.read_bytes()

    fresh = Store(tmp_path / "fresh")
    digests = archive.load_docker_archive(fresh, out)
    assert len(digests) == 2
    for ref, digest in zip(("example.com/team/app:1.0", "busybox"), digests, strict=True):
        loaded, orig = fresh.image(ref), store.image(ref)
        assert loaded.digest == digest
        assert loaded.config_digest == orig.config_digest  # the image id survives
        assert loaded.diff_ids == orig.diff_ids
        assert all(la["mediaType"] == oci.OCI_LAYER for la in loaded.layers)
    # busybox's layer was uncompressed already: its manifest comes back identical.
    assert fresh.resolve("busybox") == store.resolve("busybox")
    assert set(fresh.tags()) == set(store.tags())
    # Loading twice changes nothing; a pipe (not seekable) works as well as a file.
    before = snapshot(fresh)
    with subprocess.Popen(["cat", str(out)], stdout=subprocess.PIPE) as cat:
        assert archive.load_docker_archive(fresh, cat.stdout) == digests
    assert snapshot(fresh) == before
    # What we loaded saves to the same archive again (layers already uncompressed).
    resaved = io.BytesIO()
    archive.save_docker_archive(fresh, refs, resaved)
    assert resaved.getvalue() == out.read_bytes()


def test_docker_archive_gzipped_and_untagged(store: Store, tmp_path: Path) -> None:
    raw = io.BytesIO()
    archive.save_docker_archive(store, [store.image("busybox").config_digest[7:19]], raw)
    with tarfile.open(fileobj=io.BytesIO(raw.getvalue())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] is None  # saved by id, as docker writes it
    fresh = Store(tmp_path / "fresh")
    [digest] = archive.load_docker_archive(fresh, io.BytesIO(gz(raw.getvalue())))
    assert digest == store.resolve("busybox") and fresh.tags() == {}


def test_docker25_archive_keeps_the_manifest(tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout inside the tar; manifest.json points into blobs/."""
    src = Store(tmp_path / "src")
    digest = add_image(src, "app:2", [BASE, TOP], gzipped=False)
    layout = tmp_path / "layout"
    archive.save_oci_layout(src, ["app:2"], layout)
    image = src.image("app:2")
    entry = {"Config": f"blobs/sha256/{image.config_digest[7:]}", "RepoTags": ["app:2"],
             "Layers": [f"blobs/sha256/{la['digest'][7:]}" for la in image.layers]}  # fmt: skip
    (layout / "manifest.json").write_text(json.dumps([entry]))
    out = tmp_path / "docker25.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(layout, arcname=".")
    fresh = Store(tmp_path / "fresh")
    assert archive.load_docker_archive(fresh, out) == [digest]
    assert fresh.tags() == {"docker.io/library/app:2": digest}


def test_big_multi_member_gzip_layer(tmp_path: Path) -> None:
    """A layer in two gzip members (valid gzip), larger than a read chunk, zero-padded."""
    plain = layer_tar({"big/zeros": bytes(5 << 20), "big/text": b"abc" * 300_000}, dirs=("big",))
    blob = gz(plain[: len(plain) // 3]) + gz(plain[len(plain) // 3 :]) + bytes(512)
    config = oci.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": [sha(plain)]},
        }
    )
    manifest = [{"Config": "c.json", "RepoTags": ["big:1"], "Layers": ["l.tar.gz"]}]
    src = _archive(
        {"c.json": config, "l.tar.gz": blob, "manifest.json": json.dumps(manifest).encode()}
    )
    s = Store(tmp_path / "store")
    [digest] = archive.load_docker_archive(s, io.BytesIO(src))
    image = s.image("big:1")
    assert image.layers[0] == {
        "mediaType": oci.OCI_LAYER_GZIP,
        "digest": sha(blob),
        "size": len(blob),
    }
    out = io.BytesIO()
    archive.export_rootfs(s, "big:1", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getmember("big/zeros").size == 5 << 20
    # The same blob cut short is refused.
    before = snapshot(s)
    cut = _archive(
        {
            "c.json": config,
            "l.tar.gz": blob[: len(blob) // 2],
            "manifest.json": json.dumps(manifest).encode(),
        }
    )
    with pytest.raises(ImageError, match="truncated gzip"):
        archive.load_docker_archive(s, io.BytesIO(cut))
    assert snapshot(s) == before and digest in s.all_blobs()


def _archive(members: dict[str, bytes | tuple[str, str]]) -> bytes:
    """A tar with the given members; a ``(kind, target)`` tuple is a sym/hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
                info.linkname = data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _good_members() -> dict[str, bytes | tuple[str, str]]:
    config = oci.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": [sha(BASE)]},
        }
    )
    manifest = [{"Config": f"{sha(config)[7:]}.json", "RepoTags": ["evil:1"],
                 "Layers": ["layer/layer.tar"]}]  # fmt: skip
    return {
        f"{sha(config)[7:]}.json": config,
        "layer/layer.tar": BASE,
        "manifest.json": json.dumps(manifest).encode(),
    }


def _with_layers(members: dict, *layers: str) -> dict:
    manifest = json.loads(members["manifest.json"])
    manifest[0]["Layers"] = list(layers)
    return {**members, "manifest.json": json.dumps(manifest).encode()}


def _hostile(case: str) -> bytes:
    good = _good_members()
    config_name = next(n for n in good if n.endswith(".json") and n != "manifest.json")
    if case == "member ../x":
        return _archive({**good, "../x": b"evil"})
    if case == "absolute member":
        return _archive({**good, "/etc/evil": b"evil"})
    if case == "missing layer":
        return _archive(_with_layers(good, "nothere/layer.tar"))
    if case == "layer outside":
        return _archive(_with_layers(good, "../outside/layer.tar"))
    if case == "symlink outside":
        return _archive(_with_layers({**good, "l.tar": ("sym", "../../etc/passwd")}, "l.tar"))
    if case == "symlink to absolute":
        return _archive(_with_layers({**good, "l.tar": ("sym", "/etc/passwd")}, "l.tar"))
    if case == "hardlink outside":
        return _archive(_with_layers({**good, "l.tar": ("hard", "../etc/passwd")}, "l.tar"))
    if case == "layer is a directory":
        return _archive(_with_layers(good, "."))
    if case == "bad json":
        return _archive({**good, "manifest.json": b'[{"Config": '})
    if case == "no manifest":
        return _archive({k: v for k, v in good.items() if k != "manifest.json"})
    if case == "wrong diff_id":
        return _archive({**good, "layer/layer.tar": TOP})
    if case == "config not its name":
        return _archive({**good, config_name: good[config_name].replace(b"amd64", b"arm64")})
    if case == "layer count":
        return _archive(_with_layers(good, "layer/layer.tar", "layer/layer.tar"))
    if case == "bad tag":
        return _archive(
            {**good, "manifest.json": good["manifest.json"].replace(b"evil:1", b"Evil:1")}
        )
    if case == "truncated":
        return _archive(good)[:1536]
    if case == "not a tar":
        return b"hello, this is not an archive" * 100
    raise AssertionError(case)


HOSTILE = {
    "member ../x": "outside the archive",
    "absolute member": "outside the archive",
    "missing layer": "not in the archive",
    "layer outside": "outside the archive",
    "symlink outside": "outside the archive",
    "symlink to absolute": "outside the archive",
    "hardlink outside": "outside the archive",
    "layer is a directory": "not a file",
    "bad json": "not valid JSON",
    "no manifest": "no manifest.json",
    "wrong diff_id": "unpacks to",
    "config not its name": "does not match its content",
    "layer count": "2 layers",
    "bad tag": "must be lower-case",
    "truncated": "truncated|not in the archive|corrupt",
    "not a tar": "not a \\(gzipped\\) tar",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_docker_archive_hostile(store: Store, tmp_path: Path, case: str) -> None:
    before = snapshot(store)
    with pytest.raises(ImageError, match=HOSTILE[case]):
        archive.load_docker_archive(store, io.BytesIO(_hostile(case)))
    assert snapshot(store) == before


def test_docker_archive_good_corpus_control(store: Store) -> None:
    """The hostile cases differ from this one archive by the one thing they break."""
    [digest] = archive.load_docker_archive(store, io.BytesIO(_archive(_good_members())))
    assert store.tags()["docker.io/library/evil:1"] == digest
    # A symlink that stays inside the archive (docker save links repeated layers) is fine.
    linked = _with_layers({**_good_members(), "dup/layer.tar": ("sym", "../layer/layer.tar")},
                          "dup/layer.tar")  # fmt: skip
    assert archive.load_docker_archive(store, io.BytesIO(_archive(linked))) == [digest]


# --- import / export --------------------------------------------------------------------------
def test_export_applies_whiteouts(tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    lower = layer_tar({"a/keep": b"k", "a/gone": b"g", "d/x": b"x"}, dirs=("a", "d"))
    upper = layer_tar({"a/.wh.gone": None, "d/.wh..wh..opq": None, "d/y": b"y", "new": b"n"})
    add_image(s, "layered:1", [lower, upper])
    out = tmp_path / "export.tar"
    result = archive.export_rootfs(s, "layered:1", out)
    assert result.diff_id == sha(out.read_bytes())
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        assert names == ["a", "a/keep", "d", "d/y", "new"]
        assert tar.extractfile("d/y").read() == b"y"
    assert not s.tmp.is_dir() or not any(s.tmp.iterdir())


def test_import_then_export(tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    rootfs = layer_tar({"bin/hello": b"hi\n", "etc/hostname": b"box\n"}, dirs=("bin", "etc"))
    digest = archive.import_rootfs(s, io.BytesIO(rootfs), "imported:1", changes={"Cmd": "echo hi"})
    image = s.image("imported:1")
    assert image.digest == digest
    assert image.run_config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert f"{image.config['os']}/{image.config['architecture']}" in oci.host_platform()
    assert [la["mediaType"] for la in image.layers] == [oci.OCI_LAYER_GZIP]
    # Deterministic: the same files make the same image.
    path = tmp_path / "rootfs.tar"
    path.write_bytes(rootfs)
    assert archive.import_rootfs(s, path, "imported:2", changes={"Cmd": "echo hi"}) == digest
    out = io.BytesIO()
    archive.export_rootfs(s, "imported:1", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert sorted(tar.getnames()) == ["bin", "bin/hello", "etc", "etc/hostname"]
        assert tar.extractfile("bin/hello").read() == b"hi\n"


def test_import_refuses(tmp_path: Path) -> None:
    s = Store(tmp_path / "store")
    add_image(s, "other:1", [BASE])
    before = snapshot(s)
    with pytest.raises(LayerError, match="escapes"):
        archive.import_rootfs(s, io.BytesIO(_archive({"../evil": b"x"})), "bad:1")
    with pytest.raises(ImageError, match="cannot set 'Volume'"):
        archive.import_rootfs(s, io.BytesIO(BASE), "bad:1", changes={"Volume": "/x"})
    with pytest.raises(ImageError, match="Env must be a list"):
        archive.import_rootfs(s, io.BytesIO(BASE), "bad:1", changes={"Env": "A=1"})
    assert snapshot(s) == before


# --- interop with skopeo and umoci ------------------------------------------------------------
@needs_skopeo
def test_skopeo_reads_what_we_save(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    archive.save_oci_layout(store, ["example.com/team/app:1.0"], layout)
    app = store.image("example.com/team/app:1.0")
    info = json.loads(run("skopeo", "inspect", f"oci:{layout}:1.0"))
    assert info["Digest"] == app.digest
    assert info["Layers"] == [la["digest"] for la in app.layers]
    raw = run("skopeo", "inspect", "--raw", f"oci:{layout}:1.0")
    assert raw.encode() == app.manifest_bytes

    tar = tmp_path / "app.tar"
    archive.save_docker_archive(store, ["example.com/team/app:1.0"], tar)
    info = json.loads(run("skopeo", "inspect", f"docker-archive:{tar}"))
    assert info["Layers"] == list(app.diff_ids)  # uncompressed: digest == diff_id
    assert info["Architecture"] == "amd64"
    config = json.loads(run("skopeo", "inspect", "--config", f"docker-archive:{tar}"))
    assert config["rootfs"]["diff_ids"] == list(app.diff_ids)


@needs_skopeo
def test_skopeo_round_trips_back_to_us(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    archive.save_oci_layout(store, ["example.com/team/app:1.0"], layout)
    app = store.image("example.com/team/app:1.0")
    # skopeo's own docker-archive of our layout, loaded by us.
    tar = tmp_path / "skopeo.tar"
    run("skopeo", "copy", "-q", f"oci:{layout}:1.0", f"docker-archive:{tar}:example.com/copy:7")
    fresh = Store(tmp_path / "fresh")
    [digest] = archive.load_docker_archive(fresh, tar)
    loaded = fresh.image("example.com/copy:7")
    assert loaded.digest == digest
    assert loaded.config_digest == app.config_digest and loaded.diff_ids == app.diff_ids
    # ...and what skopeo makes of that archive as an OCI layout (gzip recompressed by skopeo,
    # short tags only), loaded by us under a name we give.
    oci_dir = tmp_path / "skopeo-oci"
    run("skopeo", "copy", "-q", "--dest-compress", f"docker-archive:{tar}", f"oci:{oci_dir}:v1")
    other = Store(tmp_path / "other")
    with pytest.raises(ImageError, match="only by tag"):
        archive.load_oci_layout(other, oci_dir)
    [digest] = archive.load_oci_layout(other, oci_dir, ref="example.com/copy:v1")
    image = other.image("example.com/copy:v1")
    # skopeo rewrites the config when it converts to OCI (another image id); the layers stay.
    assert image.diff_ids == app.diff_ids
    assert [la["mediaType"] for la in image.layers] == [oci.OCI_LAYER_GZIP] * 2
    assert image.manifest_bytes == _layout_blob(oci_dir, digest).read_bytes()
    out = io.BytesIO()
    archive.export_rootfs(other, "example.com/copy:v1", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        assert t.extractfile("app/main.txt").read() == b"main\n"


@needs_umoci
def test_umoci_unpacks_our_layout(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    archive.save_oci_layout(store, ["example.com/team/app:1.0"], layout)
    bundle = tmp_path / "bundle"
    try:
        run("umoci", "unpack", "--image", f"{layout}:1.0", str(bundle))
        rootfs = bundle / "rootfs"
        assert (rootfs / "app" / "main.txt").read_bytes() == b"main\n"
        assert (rootfs / "bin" / "hello").read_bytes().startswith(b"#!/bin/sh")
        config = json.loads((bundle / "config.json").read_text())
        assert config["process"]["args"] == ["/bin/sh"]
    finally:
        shutil.rmtree(bundle, ignore_errors=True)

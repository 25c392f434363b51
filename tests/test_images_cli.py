"""The image verbs through the real CLI, against the real registry the tests start."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

from containerlab.image.store import Store
from containerlab.runtime import container
from containerlab.runtime.spec import ContainerSpec

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, f"containerlab {' '.join(args)}: {res.stderr}"
    return res


def test_images_lists_the_offline_base_image():
    out = clab("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    assert clab("images", "-q").stdout.strip() == out[1].split()[2]


def test_the_base_image_is_the_same_on_every_build(tmp_path, clab_root):
    first = clab("inspect", "-f", "{{.Id}} {{.ManifestDigest}}", "busybox").stdout
    from containerlab.image import base

    again = base.build_base_image(Store(tmp_path / "other"), "busybox:latest")
    assert first.split()[1] == again


def test_tag_inspect_history_rmi():
    clab("tag", "busybox", "mybox:1")
    assert "mybox" in clab("images").stdout
    assert clab("inspect", "-f", "{{json .Config.Cmd}}", "mybox:1").stdout.strip() == '["sh"]'
    assert "busybox-static" in clab("history", "--no-trunc", "mybox:1").stdout
    res = clab("rmi", "mybox:1")
    assert "Untagged: mybox:1" in res.stdout
    assert "mybox" not in clab("images").stdout
    assert "busybox" in clab("images").stdout  # its blobs are shared and still used


def test_rmi_of_an_unknown_image_is_a_clear_error():
    res = clab("rmi", "ghost:1", check=False)
    assert res.returncode == 1
    assert "image 'ghost:1' not found" in res.stderr


def test_rmi_refuses_an_image_a_running_container_uses():
    clab("tag", "busybox", "inuse:1")
    with container.start(ContainerSpec(image="inuse:1", argv=("sleep", "30"))):
        res = clab("rmi", "inuse:1", check=False)
        assert res.returncode == 1 and "used by running container" in res.stderr
        assert clab("rmi", "-f", "inuse:1").returncode == 0
        # the container's layers are leased: still there while it runs
        assert Store().layer_dirs(Store().image("busybox"))


def test_save_and_load_a_docker_archive(tmp_path):
    archive = tmp_path / "busybox.tar"
    clab("save", "-o", str(archive), "busybox")
    with tarfile.open(archive) as t:
        assert "manifest.json" in t.getnames()
    clab("rmi", "busybox")
    assert "docker.io/library/busybox:latest" not in Store().tags()
    out = clab("load", "-i", str(archive)).stdout
    assert "Loaded image: busybox:latest" in out
    assert clab("run", "--rm", "busybox", "echo", "loaded").stdout == "loaded\n"


def test_save_and_load_an_oci_layout(tmp_path):
    layout = tmp_path / "layout"
    clab("tag", "busybox", "ocibox:2")
    clab("save", "--format", "oci", "-o", str(layout), "ocibox:2")
    assert (layout / "oci-layout").is_file() and (layout / "index.json").is_file()
    clab("rmi", "ocibox:2")
    clab("load", "-i", str(layout))
    assert "ocibox" in clab("images").stdout


def test_export_then_import_with_config_changes(tmp_path):
    flat = tmp_path / "rootfs.tar"
    clab("export", "-o", str(flat), "busybox")
    with tarfile.open(flat) as t:
        assert "bin/busybox" in [n.lstrip("./") for n in t.getnames()]
    clab(
        "import",
        str(flat),
        "imported:1",
        "-c",
        'ENTRYPOINT ["sh", "-c"]',
        "-c",
        'CMD ["echo $GREETING from $(pwd) as $(id -un)"]',
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /srv",
        "-c",
        "USER nobody",
    )
    res = clab("run", "--rm", "imported:1")
    assert res.stdout == "hello from /srv as nobody\n"
    # run's own arguments replace CMD, the ENTRYPOINT stays
    assert clab("run", "--rm", "imported:1", "echo override").stdout == "override\n"
    # --entrypoint replaces it (and drops CMD); -u and -w beat the image's
    res = clab("run", "--rm", "-u", "root", "-w", "/tmp", "--entrypoint", "pwd", "imported:1")
    assert res.stdout == "/tmp\n"


def test_push_and_pull_through_the_local_registry(registry):
    target = f"{registry}/lab/busybox:1"
    clab("tag", "busybox", target)
    pushed = clab("push", target).stdout
    assert "digest: sha256:" in pushed
    digest = clab("inspect", "-f", "{{.ManifestDigest}}", target).stdout.strip()
    clab("rmi", target)
    pulled = clab("pull", target).stdout
    assert f"Digest: {digest}" in pulled
    assert clab("run", "--rm", target, "echo", "pulled").stdout == "pulled\n"


def test_pull_of_a_missing_tag_is_a_clear_error(registry):
    res = clab("pull", f"{registry}/lab/nothing:1", check=False)
    assert res.returncode != 0
    assert "not found" in res.stderr


def test_image_prune_removes_what_no_tag_uses():
    clab("images")  # the base image
    store = Store()
    orphan = store.write_blob(b"nobody points at me")
    res = clab("image", "prune")
    assert "Deleted 1 blobs" in res.stdout
    assert not store.has_blob(orphan)
    assert "busybox" in clab("image", "ls").stdout


def test_every_image_verb_has_help():
    for verb in (
        "images",
        "pull",
        "push",
        "rmi",
        "inspect",
        "history",
        "save",
        "load",
        "tag",
        "import",
        "export",
    ):
        assert clab(verb, "--help").stdout.startswith("usage: containerlab")
    for verb in ("ls", "rm", "prune", "inspect", "history", "pull", "push"):
        assert clab("image", verb, "--help").stdout.startswith("usage: containerlab image")


def test_load_an_oci_layout_skopeo_wrote(tmp_path):
    layout = tmp_path / "skopeo-layout"
    clab("save", "--format", "oci", "-o", str(tmp_path / "ours"), "busybox")
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'ours'}:latest", f"oci:{layout}:v1"],
        check=True,
        capture_output=True,
    )
    res = clab("load", "-i", str(layout), check=False)
    assert res.returncode != 0 and "ref" in res.stderr  # skopeo names images by tag alone
    clab("load", "-i", str(layout), "--ref", "fromskopeo:v1")
    assert clab("run", "--rm", "fromskopeo:v1", "echo", "ok").stdout == "ok\n"

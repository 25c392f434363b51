"""overlayfs against the real kernel: merged views, copy-up, whiteouts, opaque dirs, diff,
which layer a path comes from, and the errors. Every mount is made in a tmp dir and must be
gone when its ``with`` ends (the root conftest fails a test that leaks one)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from containerlab import layers, syscalls
from containerlab.errors import LayerError


def overlay_mounts() -> list[str]:
    """Mount points of the overlays in this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split(" - ")[1].startswith("overlay ")]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def stack(tmp_path: Path) -> dict[str, Path]:
    """Two lower layers, an empty upper, work and mount dirs."""
    d = {n: tmp_path / n for n in ("base", "top", "upper", "work", "merged")}
    for p in d.values():
        p.mkdir()
    write(d["base"] / "etc/passwd", "root:x:0:0\n" * 100)
    write(d["base"] / "etc/hostname", "base\n")
    write(d["base"] / "app/old.txt", "old\n")
    write(d["base"] / "app/keep/k.txt", "k\n")
    write(d["top"] / "etc/hostname", "top\n")
    write(d["top"] / "bin/tool", "tool\n")
    return d


def lowers_of(d: dict[str, Path]) -> list[Path]:
    return [d["base"], d["top"]]


def test_overlay_options_reverse_lowers_and_escape():
    opts = layers.overlay_options(["/l/base", "/l/mid", "/l/a:b,c"], "/u", "/w")
    assert opts == r"lowerdir=/l/a\:b\,c:/l/mid:/l/base,upperdir=/u,workdir=/w"
    assert layers.overlay_options(["/a", "/b"], None, None) == "lowerdir=/b:/a"
    assert layers.overlay_options(["/a"], "/u", "/w", ["index=off"]).endswith(",index=off")
    with pytest.raises(LayerError, match="both an upper and a work dir"):
        layers.overlay_options(["/a"], "/u", None)
    with pytest.raises(LayerError, match="at least one lower"):
        layers.overlay_options([], "/u", "/w")


def test_merged_view_top_layer_wins_and_mount_is_gone_after(stack):
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        assert m == stack["merged"]
        assert str(m) in overlay_mounts()
        assert sorted(os.listdir(m)) == ["app", "bin", "etc"]
        assert (m / "etc/hostname").read_text() == "top\n"
        assert (m / "etc/passwd").read_text().startswith("root:")
    assert str(stack["merged"]) not in overlay_mounts()
    assert os.listdir(stack["merged"]) == []


def test_paths_with_colon_and_comma_reach_the_kernel_and_read_back(tmp_path):
    lower_a, lower_b = tmp_path / "a:1", tmp_path / "b,2"
    write(lower_a / "f", "a")
    write(lower_b / "g", "b")
    upper, work, target = tmp_path / "up:3", tmp_path / "wk,4", tmp_path / "mnt"
    for p in (upper, work, target):
        p.mkdir()
    with layers.overlay([lower_a, lower_b], upper, work, target) as m:
        assert sorted(os.listdir(m)) == ["f", "g"]
        from containerlab import rootfs

        mount = next(x for x in rootfs.mountinfo() if x.mountpoint == str(target))
        dirs = layers.parse_overlay_options(mount.super_options)
    assert dirs == layers.OverlayDirs((str(lower_a), str(lower_b)), str(upper), str(work))


def test_copy_up_copies_the_whole_file_and_leaves_the_lower_alone(stack):
    lower_file = stack["base"] / "etc/passwd"
    before = lower_file.read_bytes()
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        with open(m / "etc/passwd", "a") as f:
            f.write("clab:x:1000:1000\n")
        merged = (m / "etc/passwd").read_bytes()
    up = stack["upper"] / "etc/passwd"
    assert up.read_bytes() == before + b"clab:x:1000:1000\n" == merged  # the whole file
    assert lower_file.read_bytes() == before  # the lower layer is never written
    assert os.stat(up).st_ino != os.stat(lower_file).st_ino
    # Only what changed is in the upper dir: etc/ (its parent) and the file itself.
    assert sorted(str(p.relative_to(stack["upper"])) for p in stack["upper"].rglob("*")) == [
        "etc",
        "etc/passwd",
    ]


def test_delete_leaves_a_whiteout_in_the_upper_dir(stack):
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        os.remove(m / "etc/hostname")
        assert not (m / "etc/hostname").exists()
    wh = stack["upper"] / "etc/hostname"
    st = os.lstat(wh)
    assert layers.is_whiteout(wh)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (0, 0)
    out = subprocess.run(["ls", "-l", str(wh)], capture_output=True, text=True).stdout
    assert out.startswith("c---------")
    # Both lower copies are still there: the whiteout hides them.
    assert (stack["base"] / "etc/hostname").exists() and (stack["top"] / "etc/hostname").exists()
    assert not layers.is_whiteout(stack["base"] / "etc/hostname")
    assert not layers.is_whiteout(stack["upper"] / "missing")


def test_rm_r_then_mkdir_makes_an_opaque_dir(stack):
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        shutil.rmtree(m / "app")
        (m / "app").mkdir()
        write(m / "app/new.txt", "new\n")
        assert os.listdir(m / "app") == ["new.txt"]  # nothing of the lower app/ shows
    assert layers.is_opaque(stack["upper"] / "app")
    assert os.getxattr(stack["upper"] / "app", layers.OPAQUE_XATTR) == b"y"
    assert not layers.is_opaque(stack["upper"] / "app/new.txt")
    assert not layers.is_opaque(stack["base"] / "app")


def test_diff_lists_added_changed_deleted(stack):
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        with open(m / "etc/passwd", "a") as f:
            f.write("x\n")
        os.remove(m / "etc/hostname")
        os.remove(m / "bin/tool")
        write(m / "srv/data.txt", "d\n")
        shutil.rmtree(m / "app")
        (m / "app").mkdir()
        write(m / "app/new.txt", "n\n")
        write(m / "tmp-then-gone", "t")
        os.remove(m / "tmp-then-gone")  # made and removed in the upper: no trace at all
    got = [str(c) for c in layers.diff(stack["upper"], lowers_of(stack))]
    assert got == [
        "C /app",
        "D /app/keep",
        "A /app/new.txt",
        "D /app/old.txt",
        "C /bin",
        "D /bin/tool",
        "C /etc",
        "D /etc/hostname",
        "C /etc/passwd",
        "A /srv",
        "A /srv/data.txt",
    ]
    assert layers.Change("A", "/srv") in layers.diff(stack["upper"], lowers_of(stack))
    assert layers.diff(stack["upper"] / "app", []) == [layers.Change("A", "/new.txt")]


def test_diff_of_a_missing_upper_is_a_layer_error(tmp_path):
    with pytest.raises(LayerError, match="does not exist"):
        layers.diff(tmp_path / "nope", [])


@pytest.fixture
def hand_made(tmp_path: Path) -> tuple[list[Path], Path]:
    """Three lowers and an upper with whiteouts and opaque dirs, made by hand. Each file
    holds the index of its layer, so the kernel's merged view can tell where it came from."""
    names = ["l0", "l1", "l2", "up"]
    dirs = [tmp_path / n for n in names]
    for d in dirs:
        d.mkdir()

    def f(layer: int, rel: str) -> None:
        write(dirs[layer] / rel, str(layer))

    for rel in ("etc/a", "etc/b", "etc/c", "d/x", "d/sub/y", "only0", "gone-in-1"):
        f(0, rel)
    f(1, "etc/a")
    layers.make_whiteout(dirs[1] / "gone-in-1")  # a middle layer deletes
    (dirs[1] / "d").mkdir()
    layers.make_opaque(dirs[1] / "d")  # ... and replaces d/ entirely
    f(1, "d/z")
    f(1, "file-then-dir")
    f(2, "etc/a")
    f(2, "gone-in-1")  # made again above the whiteout
    f(2, "d/x")
    (dirs[2] / "file-then-dir").mkdir()  # a directory over a lower file
    f(2, "file-then-dir/inner")
    (dirs[3] / "etc").mkdir()  # the upper deleted etc/ whole and made it again: opaque
    layers.make_opaque(dirs[3] / "etc")
    f(3, "etc/b")
    layers.make_whiteout(dirs[3] / "only0")
    return dirs[:3], dirs[3]


EXPECTED = {
    "/etc/a": None,  # hidden by the opaque etc/ of the upper
    "/etc/b": 3,
    "/etc/c": None,
    "/etc": 3,
    "/d/x": 2,
    "/d/z": 1,
    "/d/sub/y": None,  # hidden by the opaque d/ of layer 1
    "/d/sub": None,
    "/only0": None,  # whited out by the upper
    "/gone-in-1": 2,
    "/file-then-dir": 2,
    "/file-then-dir/inner": 2,
    "/nothing": None,
    "/": 3,
}


def test_layer_of_across_three_lowers_and_an_upper(hand_made):
    lowers, upper = hand_made
    for path, want in EXPECTED.items():
        assert layers.layer_of(path, lowers, upper) == want, path
    # Without the upper, the lowers alone:
    assert layers.layer_of("/etc/a", lowers) == 2
    assert layers.layer_of("/etc/c", lowers) == 0
    assert layers.layer_of("/only0", lowers) == 0
    assert layers.layer_of("/d/sub/y", lowers) is None
    assert layers.layer_of("/gone-in-1", lowers[:2]) is None
    assert layers.layer_of("etc/b/../c", lowers) == 0  # normalised like a path


def test_layer_of_agrees_with_the_kernel(hand_made, tmp_path):
    lowers, upper = hand_made
    target = tmp_path / "mnt"
    target.mkdir()
    view = layers.stack_view(lowers, upper)
    # A read-only overlay of all four: what the kernel shows is what layer_of says.
    with layers.overlay([*lowers, upper], None, None, target) as m:
        seen = {"/" + str(p.relative_to(m)) for p in m.rglob("*")}
        assert seen == set(view) - {"/"}
        for path, idx in view.items():
            if (m / path.lstrip("/")).is_file():
                assert (m / path.lstrip("/")).read_text() == str(idx), path
    for path, want in EXPECTED.items():
        assert view.get(path) == want or path == "/"


def test_stack_view_for_chosen_paths_and_entries(hand_made):
    lowers, upper = hand_made
    assert layers.stack_view(lowers, upper, ["/etc/b", "etc/a", "/d/x"]) == {
        "/d/x": 2,
        "/etc/b": 3,
    }
    entries = layers.layer_entries(lowers, upper)
    kinds = {(e.layer, e.path): e.kind for e in entries}
    assert kinds[(1, "/gone-in-1")] == "whiteout"
    assert kinds[(1, "/d")] == "opaque"
    assert kinds[(3, "/etc")] == "opaque"
    assert kinds[(0, "/etc")] == "dir"
    assert kinds[(0, "/etc/a")] == "file"
    assert entries == sorted(entries, key=lambda e: (e.path, e.layer))


def test_read_only_overlay_refuses_writes(stack):
    with layers.overlay(lowers_of(stack), None, None, stack["merged"]) as m:
        with pytest.raises(OSError) as err:
            (m / "etc/new").write_text("x")
        assert err.value.errno == errno.EROFS
    assert str(stack["merged"]) not in overlay_mounts()


def test_mount_is_gone_when_the_body_raises(stack):
    with (
        pytest.raises(RuntimeError, match="boom"),
        layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]),
    ):
        assert str(stack["merged"]) in overlay_mounts()
        raise RuntimeError("boom")
    assert str(stack["merged"]) not in overlay_mounts()


def test_busy_mount_is_detached_lazily(stack):
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        f = open(m / "etc/passwd")  # noqa: SIM115 - held open across the unmount on purpose
        cwd = os.getcwd()
        os.chdir(m / "etc")  # a cwd inside makes a plain umount fail with EBUSY
    try:
        assert str(stack["merged"]) not in overlay_mounts()
        assert f.read().startswith("root:")  # still readable: detached, not destroyed
    finally:
        os.chdir(cwd)
        f.close()


def assert_nothing_mounted_on(target: Path) -> None:
    assert str(target) not in overlay_mounts()


def test_missing_lower_is_a_clear_error(stack):
    with (
        pytest.raises(LayerError) as err,
        layers.overlay(
            [stack["base"], stack["base"].with_name("nope")],
            stack["upper"],
            stack["work"],
            stack["merged"],
        ),
    ):
        pytest.fail("mounted")
    msg = str(err.value)
    assert "lower dir 1 of 2" in msg and "nope" in msg and "does not exist" in msg
    assert "No such file or directory [ENOENT]" in msg  # the kernel's own words
    assert isinstance(err.value.__cause__, OSError)
    assert_nothing_mounted_on(stack["merged"])


def test_single_lower_without_upper_is_explained(stack):
    with (
        pytest.raises(LayerError, match=r"at least 2 lower dirs.*EINVAL"),
        layers.overlay([stack["base"]], None, None, stack["merged"]),
    ):
        pytest.fail("mounted")
    assert_nothing_mounted_on(stack["merged"])


def test_missing_target_and_upper(stack):
    with (
        pytest.raises(LayerError, match=r"mount point .* is not a directory"),
        layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["work"] / "x"),
    ):
        pytest.fail("mounted")
    with (
        pytest.raises(LayerError, match=r"upper dir .* does not exist"),
        layers.overlay(lowers_of(stack), stack["upper"] / "x", stack["work"], stack["merged"]),
    ):
        pytest.fail("mounted")
    assert_nothing_mounted_on(stack["merged"])


def test_work_on_another_mount_than_upper(stack, tmp_path):
    other = tmp_path / "clab-tmpfs"
    other.mkdir()
    syscalls.mount("clab-test", str(other), "tmpfs", 0, "size=1m")
    try:
        (other / "work").mkdir()
        with (
            pytest.raises(LayerError, match=r"same mount.*EINVAL"),
            layers.overlay(lowers_of(stack), stack["upper"], other / "work", stack["merged"]),
        ):
            pytest.fail("mounted")
    finally:
        syscalls.umount2(str(other))
    assert_nothing_mounted_on(stack["merged"])


def test_upper_on_an_overlay_is_refused(stack, tmp_path):
    outer = tmp_path / "outer"
    outer.mkdir()
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        (m / "u").mkdir()
        (m / "w").mkdir()
        with (
            pytest.raises(
                LayerError, match=r"on a filesystem of type overlay.*cannot be an overlay's"
            ),
            layers.overlay([stack["base"]], m / "u", m / "w", outer),
        ):
            pytest.fail("mounted")
        # An overlay may be a *lower* of another overlay, though.
        with layers.overlay([m, stack["base"]], None, None, outer) as o:
            assert (o / "bin/tool").read_text() == "tool\n"
    assert_nothing_mounted_on(outer)


def test_too_many_lowers_is_refused_before_mounting(stack):
    with pytest.raises(LayerError, match="at most 500"):
        layers.mount_overlay([stack["base"]] * 501, None, None, stack["merged"])
    long_name = stack["base"].parent / ("clab-" + "x" * 200)
    long_name.mkdir()
    long = [long_name] * 30
    with pytest.raises(LayerError, match="at most 4095"):
        layers.mount_overlay(long, None, None, stack["merged"])
    assert_nothing_mounted_on(stack["merged"])


def test_hand_made_whiteout_and_opaque_dir(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    layers.make_whiteout(d / "wh")
    st = os.lstat(d / "wh")
    assert layers.is_whiteout(d / "wh") and st.st_rdev == 0 and (st.st_mode & 0o7777) == 0
    (d / "plain").write_text("")
    assert not layers.is_whiteout(d / "plain") and not layers.is_opaque(d)
    layers.make_opaque(d)
    assert layers.is_opaque(d)
    with pytest.raises(OSError):
        layers.make_whiteout(d / "wh")  # exists


def test_explain_mode_prints_the_mount(stack, capsys):
    syscalls.set_explain(True)
    try:
        with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]):
            pass
        layers.make_whiteout(stack["upper"] / "gone")
    finally:
        syscalls.set_explain(None)
    err = capsys.readouterr().err
    top, base = stack["top"], stack["base"]
    assert f"mount -t overlay overlay {stack['merged']} -o lowerdir={top}:{base}," in err
    assert f"umount {stack['merged']}" in err
    assert "mknod -m 000" in err and " c 0 0" in err


def test_diff_tar_round_trip(stack, tmp_path):
    layertar = pytest.importorskip("containerlab.layertar")
    with layers.overlay(lowers_of(stack), stack["upper"], stack["work"], stack["merged"]) as m:
        os.remove(m / "etc/hostname")
        write(m / "srv/new.txt", "new\n")
        shutil.rmtree(m / "app")
        (m / "app").mkdir()
    tar = tmp_path / "layer.tar"
    digests = layers.diff_tar(stack["upper"], tar)
    assert digests.size == tar.stat().st_size and digests.diff_id.startswith("sha256:")
    import tarfile

    with tarfile.open(tar) as t:
        names = {n.rstrip("/").removeprefix("./") for n in t.getnames()}
    assert {"etc/.wh.hostname", "app/.wh..wh..opq", "srv/new.txt"} <= names
    # Unpacked as overlay whiteouts and stacked as a new lower: the deletions hold.
    new_layer = tmp_path / "layer"
    new_layer.mkdir()
    with open(tar, "rb") as f:
        layertar.extract_layer(f, new_layer, whiteouts="overlay")
    assert layers.is_whiteout(new_layer / "etc/hostname") and layers.is_opaque(new_layer / "app")
    with layers.overlay([*lowers_of(stack), new_layer], None, None, stack["merged"]) as m:
        assert not (m / "etc/hostname").exists()
        assert os.listdir(m / "app") == []
        assert (m / "srv/new.txt").read_text() == "new\n"

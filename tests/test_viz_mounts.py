"""The mount-table views: a findmnt-like tree, a comparison, a before/after figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from containerlab import rootfs
from containerlab.rootfs import Mount
from containerlab.runtime.container import start
from containerlab.runtime.spec import ContainerSpec
from containerlab.viz import mounts as vm


def _mount(mid: int, parent: int, point: str, fstype: str = "tmpfs", options: str = "rw", **kw):
    fields = {"root": "/", "propagation": "private", "source": fstype, "super_options": "rw"}
    fields.update(kw)
    return Mount(mid, parent, mountpoint=point, fstype=fstype, options=options, **fields)


def _container_mounts(masked: bool = True) -> list[Mount]:
    spec = ContainerSpec(image="busybox", argv=("sleep", "30"), masked_paths=masked)
    with start(spec) as c:
        return rootfs.mountinfo(c.pid)


@pytest.fixture(scope="module")
def container_mounts(tmp_path_factory: pytest.TempPathFactory) -> list[Mount]:
    # One container for the read-only tests; its own state root, removed afterwards.
    mp = pytest.MonkeyPatch()
    mp.setenv("CONTAINERLAB_ROOT", str(tmp_path_factory.mktemp("clab-viz-mounts")))
    try:
        return _container_mounts()
    finally:
        mp.undo()


def _line(text: str, mountpoint: str) -> str:
    hits = [ln for ln in text.splitlines() if ln.split("─ ")[-1].split()[0] == mountpoint]
    assert hits, f"no line for {mountpoint} in:\n{text}"
    return hits[0]


def test_host_tree_lists_every_mount_once_parents_first():
    host = rootfs.mountinfo()
    rows = vm.tree_rows(host)
    assert sorted(r.mount.mount_id for r in rows) == sorted(m.mount_id for m in host)
    position = {r.mount.mount_id: i for i, r in enumerate(rows)}
    for r in rows:
        if r.depth:
            assert position[r.mount.parent_id] < position[r.mount.mount_id]
    assert rows[0].mount.mountpoint == "/" and rows[0].depth == 0
    text = str(vm.mount_tree(host, title="host"))
    lines = text.splitlines()
    assert lines[0] == "host" and lines[1].startswith("MOUNT POINT")
    assert len(lines) == len(host) + 2
    assert repr(vm.mount_tree(host)) == str(vm.mount_tree(host))


def test_container_tree_marks_masks_readonly_and_hides_ids(container_mounts):
    text = str(vm.mount_tree(container_mounts))
    root = _line(text, "/")
    assert "overlay" in root and "private" in root
    assert "read-only" in _line(text, "/sys")
    assert "read-only path" in _line(text, "/proc/sys")
    assert "├─ /proc" in text or "└─ /proc" in text
    masked = [m for m in container_mounts if m.mountpoint in rootfs.MASKED_PATHS]
    assert masked, "a container hides at least /proc/keys, /proc/timer_list, /sys/firmware"
    for m in masked:
        assert "masked" in _line(text, m.mountpoint)
    # Nothing that changes from run to run: no mount ids, no major:minor.
    for m in container_mounts:
        assert f" {m.mount_id} " not in text
    # Every mount of a container is private: nothing propagates to or from the host.
    assert {m.propagation for m in container_mounts} == {"private"}


def test_tree_columns_do_not_depend_on_kernel_specific_rows(container_mounts):
    # The optional masked paths (/proc/kcore, /proc/scsi...) must not shift other rows.
    optional = {"/proc/acpi", "/proc/kcore", "/proc/scsi", "/sys/devices/virtual/powercap"}
    fewer = [m for m in container_mounts if m.mountpoint not in optional]
    full_lines = {ln for ln in str(vm.mount_tree(container_mounts)).splitlines()}
    for ln in str(vm.mount_tree(fewer)).splitlines():
        assert ln in full_lines


def test_unmasked_container_has_no_masked_mounts():
    mounts = _container_mounts(masked=False)
    text = str(vm.mount_tree(mounts))
    assert "masked" not in text and "read-only path" not in text
    assert {m.mountpoint for m in mounts} == {
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        # Its own names, bound over the image's files (runtime/networking.py).
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    }


def test_compare_host_with_container(container_mounts):
    host = rootfs.mountinfo()
    diff = vm.compare(host, container_mounts)
    assert {"/", "/proc", "/dev", "/sys"} <= set(diff.both)
    assert "/proc/sys" in diff.only_after and "/proc/keys" in diff.only_after
    host_root = next(m for m in host if m.mountpoint == "/")
    if host_root.fstype != "overlay":
        assert "/" in diff.changed_type
    host_only = {m.mountpoint for m in host} - {m.mountpoint for m in container_mounts}
    assert set(diff.only_before) == host_only
    if any(m.mountpoint == "/sys/fs/cgroup" for m in host):
        assert "/sys/fs/cgroup" in diff.only_before  # not mounted in the container (yet)


def test_before_after_figure(container_mounts):
    host = rootfs.mountinfo()
    fig = vm.before_after(host, container_mounts, before_label="host", after_label="box")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    left, right = (ax.get_title(loc="left") for ax in fig.axes)
    assert left == f"host: {len(host)} mounts"
    assert right == f"box: {len(container_mounts)} mounts"
    right_labels = {t.get_text() for t in fig.axes[1].texts}
    assert {"/", "/proc/sys", "/sys"} <= right_labels
    assert plt.get_fignums() == []  # detached from pyplot: shown once, nothing to close
    fig.canvas.draw()  # renders without error


def test_before_after_truncates_long_tables():
    many = [_mount(1, 0, "/", "ext4")] + [_mount(i, 1, f"/m{i:03}") for i in range(2, 80)]
    fig = vm.before_after(many, many[:3], max_rows=10)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "… and 69 more" in texts


def test_covered_mounts_and_propagation_are_shown():
    mounts = [
        _mount(10, 1, "/", "ext4", propagation="shared:1"),
        _mount(11, 10, "/dev/pts", "devpts"),
        _mount(12, 11, "/dev/pts", "devpts", options="ro"),  # mounted on top of 11
        _mount(13, 10, "/proc/kcore", "tmpfs", options="ro"),
    ]
    text = str(vm.mount_tree(mounts))
    lines = text.splitlines()
    assert "shared:1" in lines[1]
    assert lines[2].startswith("├─ /dev/pts") and lines[2].endswith("covered")
    assert lines[3].startswith("│  └─ /dev/pts") and lines[3].endswith("read-only")
    assert lines[4].startswith("└─ /proc/kcore") and lines[4].endswith("read-only, masked")
    assert vm.notes(mounts[2], mounts) == ("read-only",)


def test_a_looping_table_does_not_hang():
    # Two mounts claiming each other as parent: neither is a root, nothing is drawn twice.
    mounts = [_mount(1, 0, "/"), _mount(2, 3, "/a"), _mount(3, 2, "/b")]
    rows = vm.tree_rows(mounts)
    assert [r.mount.mount_id for r in rows] == [1]

"""The namespace pictures draw what /proc says: tested on real processes."""

from __future__ import annotations

import os
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from containerlab import namespaces
from containerlab.viz import namespaces as viz


def _children(pid: int, want: int = 1, timeout: float = 5.0) -> list[int]:
    """The children of ``pid``, waiting until there are ``want`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
        if len(kids) >= want or time.monotonic() > deadline:
            return kids
        time.sleep(0.02)


@pytest.fixture
def figures():
    """Close every figure a test made, even when it fails."""
    yield
    plt.close("all")


def _cells(fig) -> dict[str, str]:
    """pid:kind -> state, from the gids the grid gives its cells."""
    out = {}
    for patch in fig.axes[0].patches:
        gid = patch.get_gid()
        if gid:
            pid, kind, state = gid.split(":")
            out[f"{pid}:{kind}"] = state
    return out


def test_short_label():
    assert viz.short_label(4026531836) == "…31836"
    assert viz.short_label(123) == "123"


def test_grid_of_this_process_is_all_shared(figures):
    me = os.getpid()
    fig = viz.namespace_grid({me: "me"})
    cells = _cells(fig)
    assert len(cells) == len(namespaces.KINDS) == 8
    assert set(cells.values()) == {"shared"}
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    mine = namespaces.ns_ids(me)
    assert sorted(texts) == sorted(viz.short_label(mine[k]) for k in namespaces.KINDS)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(namespaces.KINDS)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"me ({me})"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["shared with this process", "new namespace"]


def test_grid_marks_new_namespaces_of_a_spawned_process(figures):
    me = os.getpid()
    with namespaces.spawn(
        ["sh", "-c", "sleep 30 & wait"], new={"uts", "pid", "mnt", "net"}, mount_proc=True
    ) as proc:
        child = _children(proc.child_pid)[0]
        ids = {pid: namespaces.ns_ids(pid) for pid in (me, proc.child_pid, child)}
        fig = viz.namespace_grid(
            {me: "kernel", proc.child_pid: "container", child: "sleep"}, ids=ids
        )
        expected = viz.describe({me: "kernel", proc.child_pid: "container", child: "sleep"})
    cells = _cells(fig)
    assert len(fig.axes[0].patches) == 3 * 8
    for kind in namespaces.KINDS:
        assert cells[f"{me}:{kind}"] == "shared"
        want = "new" if kind in {"uts", "pid", "mnt", "net"} else "shared"
        assert cells[f"{proc.child_pid}:{kind}"] == want
        assert cells[f"{child}:{kind}"] == want
    colours = {matplotlib.colors.to_hex(p.get_facecolor()) for p in fig.axes[0].patches}
    assert colours == {viz.COLORS["shared"], viz.COLORS["new"]}
    # The container and its child are in the same new namespaces: same labels per column.
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[8:16] == texts[16:24]
    assert texts[8 + 1] == viz.short_label(ids[proc.child_pid]["uts"])
    assert texts[8 + 1] != texts[1]
    lines = expected.splitlines()
    assert lines[1].split()[1:] == ["shared"] * 8
    assert lines[2].split()[1:] == [
        "new" if k in {"uts", "pid", "mnt", "net"} else "shared" for k in namespaces.KINDS
    ]


def test_grid_against_a_reference_pid(figures):
    me = os.getpid()
    with namespaces.spawn(["sleep", "30"], new={"uts", "ipc"}) as proc:
        fig = viz.namespace_grid(
            [me, proc.child_pid], reference=proc.child_pid, reference_label="the sleeper"
        )
    cells = _cells(fig)
    assert cells[f"{proc.child_pid}:uts"] == "shared"
    assert cells[f"{me}:uts"] == "new"
    assert cells[f"{me}:ipc"] == "new"
    assert cells[f"{me}:net"] == "shared"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "shared with the sleeper"


def test_grid_needs_processes():
    with pytest.raises(ValueError):
        viz.namespace_grid({})


def test_nspid_and_chain_of_this_process():
    me = os.getpid()
    assert viz.nspid(me) == [me]
    assert viz.pid_namespace_chain(me) == [namespaces.ns_id(me, "pid")]


def test_nspid_of_a_gone_process():
    with namespaces.spawn(["true"]) as proc:
        proc.wait()
    with pytest.raises(namespaces.NamespaceError, match="no process"):
        viz.nspid(proc.child_pid)


def test_pid_picture_of_nested_pid_namespaces(figures):
    me = os.getpid()
    # unshare(1) as PID 1 of a new PID namespace, making another one for its sleep.
    with namespaces.spawn(["unshare", "--pid", "--fork", "sleep", "30"], new={"pid"}) as proc:
        inner = _children(proc.child_pid)[0]
        assert viz.nspid(proc.child_pid) == [proc.child_pid, 1]
        assert viz.nspid(inner) == [inner, 2, 1]
        chain = viz.pid_namespace_chain(inner)
        assert len(chain) == 3
        assert chain[0] == namespaces.ns_id(me, "pid")
        assert chain[1] == namespaces.ns_id(proc.child_pid, "pid")
        fig = viz.pid_namespace_picture({me: "kernel", proc.child_pid: "unshare", inner: "sleep"})
    ax = fig.axes[0]
    boxes = [p.get_gid() for p in ax.patches]
    assert boxes == [
        f"pidns:{chain[0]}:level0",
        f"pidns:{chain[1]}:level1",
        f"pidns:{chain[2]}:level2",
    ]
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == list(viz.LEVEL_COLORS[:3])
    labels = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
    assert labels[f"process:{me}"] == f"kernel\npid {me}"
    assert labels[f"process:{proc.child_pid}"] == f"unshare\nhost {proc.child_pid} -> inside 1"
    assert labels[f"process:{inner}"] == f"sleep\nhost {inner} -> inside 1"
    # The nested box lies inside its parent's.
    outer, middle, innermost = (p.get_bbox() for p in ax.patches)
    assert outer.x0 < middle.x0 < innermost.x0 and innermost.x1 < middle.x1 < outer.x1

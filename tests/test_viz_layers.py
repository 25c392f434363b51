"""The layer-stack picture: one band per layer, files where they live, the merged view on top."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from containerlab import layers
from containerlab.layers import Entry
from containerlab.viz import layers as vl

ENTRIES = [
    Entry(0, "/etc", "dir"),
    Entry(0, "/etc/a", "file"),
    Entry(0, "/etc/b", "file"),
    Entry(1, "/etc", "dir"),
    Entry(1, "/etc/a", "file"),
    Entry(2, "/etc", "dir"),
    Entry(2, "/etc/b", "whiteout"),
    Entry(2, "/new", "file"),
    Entry(2, "/app", "opaque"),
]
VIEW = {"/app": 2, "/etc": 2, "/etc/a": 1, "/new": 2}


def boxes(fig: Figure) -> dict[str, object]:
    return {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid()}


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_columns_leave_out_plain_directories_unless_asked():
    assert vl.columns(ENTRIES) == ["/app", "/etc/a", "/etc/b", "/new"]
    assert vl.columns(ENTRIES, dirs=True) == ["/app", "/etc", "/etc/a", "/etc/b", "/new"]


def test_every_file_sits_in_the_layer_that_holds_it():
    fig = vl.layer_stack(VIEW, ENTRIES, names=["base", "app", "upper"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    b = boxes(fig)
    in_layers = {g for g in b if g.startswith("layer:")}
    assert in_layers == {
        "layer:0:/etc/a",
        "layer:0:/etc/b",
        "layer:1:/etc/a",
        "layer:2:/etc/b",
        "layer:2:/new",
        "layer:2:/app",
    }
    # Bands bottom first: a box of layer i is drawn between y=i and y=i+1.
    for gid in in_layers:
        i = int(gid.split(":")[1])
        assert i < b[gid].get_y() < i + 1
    assert {"base", "app", "upper", "merged view"} <= set(texts(fig))
    assert {"/etc/a", "/etc/b", "/new", "/app"} <= set(texts(fig))


def test_merged_view_is_coloured_by_the_winning_layer_and_marks_hidden_paths():
    fig = vl.layer_stack(VIEW, ENTRIES)
    b = boxes(fig)
    for path, idx in VIEW.items():
        if f"merged:{path}" in b:
            assert to_hex(b[f"merged:{path}"].get_facecolor()) == vl.layer_color(idx)
            assert b[f"merged:{path}"].get_y() > 3  # above every band
    hidden = b["merged:/etc/b"]
    assert to_hex(hidden.get_facecolor()) == "#ffffff" and hidden.get_linestyle() == "--"
    assert "(hidden)" in texts(fig)
    assert {"layer 0", "layer 1", "layer 2"} <= set(texts(fig))


def test_whiteouts_and_opaque_dirs_are_marked():
    b = boxes(vl.layer_stack(VIEW, ENTRIES))
    wh = b["layer:2:/etc/b"]
    assert wh.get_hatch() == "xx" and to_hex(wh.get_edgecolor()) == vl.WHITEOUT_COLOR
    assert b["layer:2:/app"].get_linestyle() == "--"
    assert b["layer:0:/etc/a"].get_hatch() is None


def test_picture_of_a_real_stack(tmp_path):
    base, top = tmp_path / "base", tmp_path / "top"
    (base / "etc").mkdir(parents=True)
    (base / "etc/passwd").write_text("root\n")
    (base / "etc/shadow").write_text("x\n")
    (top / "etc").mkdir(parents=True)
    layers.make_whiteout(top / "etc/shadow")
    view = layers.stack_view([base], top)
    entries = layers.layer_entries([base], top)
    fig = vl.layer_stack(view, entries, names=["base", "upper"])
    b = boxes(fig)
    assert set(b) == {
        "layer:0:/etc/passwd",
        "layer:0:/etc/shadow",
        "layer:1:/etc/shadow",
        "merged:/etc/passwd",
        "merged:/etc/shadow",
    }
    assert "✕ shadow" in texts(fig)

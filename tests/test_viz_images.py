"""The blob-size picture: one bar per (name, size) row, sized, labelled and grouped."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from containerlab.viz import images as vi

ROWS = [("manifest", 405), ("config", 438), ("layer 0", 1_036_449), ("layer 1", 0)]


def bars(fig: Figure) -> dict[str, object]:
    return {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid()}


def texts(fig: Figure) -> list[str]:
    return [t.get_text().strip() for t in fig.axes[0].texts]


def test_one_bar_per_row_first_row_on_top_with_its_size():
    fig = vi.blob_sizes(ROWS)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    b = bars(fig)
    assert set(b) == {f"bar:{name}" for name, _ in ROWS}
    assert b["bar:layer 0"].get_width() == 1_036_449
    assert b["bar:manifest"].get_width() == 405
    # The first row is drawn highest, the last lowest.
    ys = [b[f"bar:{name}"].get_y() for name, _ in ROWS]
    assert ys == sorted(ys, reverse=True)
    ticks = {t.get_position()[1]: t.get_text() for t in fig.axes[0].get_yticklabels()}
    # A bar's y is its bottom edge; its tick (its name) is at its centre.
    assert [ticks[round(y + 0.3)] for y in ys] == [n for n, _ in ROWS]
    assert texts(fig) == ["405 B", "438 B", "1.0 MB", "0 B"]


def test_log_scale_by_default_and_a_zero_size_still_drawn():
    fig = vi.blob_sizes(ROWS)
    assert fig.axes[0].get_xscale() == "log"
    assert bars(fig)["bar:layer 1"].get_width() == 1  # 0 bytes cannot sit on a log axis
    linear = vi.blob_sizes(ROWS, log=False)
    assert linear.axes[0].get_xscale() == "linear"
    assert bars(linear)["bar:layer 1"].get_width() == 0


def test_groups_colour_the_bars_and_make_a_legend():
    groups = ["own", "own", "shared", "own"]
    fig = vi.blob_sizes(ROWS, groups=groups)
    b = bars(fig)
    assert to_hex(b["bar:layer 0"].get_facecolor()) == vi.GROUP_COLORS[1]
    assert to_hex(b["bar:config"].get_facecolor()) == vi.GROUP_COLORS[0]
    (legend,) = fig.legends  # under the axis, so it covers no bar
    assert [t.get_text() for t in legend.get_texts()] == ["own", "shared"]
    assert vi.blob_sizes(ROWS).legends == []


def test_the_figure_is_detached_from_pyplot():
    before = plt.get_fignums()
    vi.blob_sizes(ROWS)
    assert plt.get_fignums() == before  # Jupyter would otherwise draw it a second time


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([], {}, "at least one"),
        ([("x", -1)], {}, "negative size"),
        (ROWS, {"groups": ["a"]}, "one group per row"),
    ],
)
def test_bad_input_is_refused_with_the_reason(rows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        vi.blob_sizes(rows, **kwargs)

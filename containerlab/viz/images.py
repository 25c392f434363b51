"""A picture of what an image is made of: one bar per blob (layer, config, manifest), its size.

The blobs of an image differ in size by orders of magnitude: a manifest and a config of a few
hundred bytes, layers of kilobytes to hundreds of megabytes. The bars are drawn on a
logarithmic scale by default so that every one of them is visible, and each is labelled with
its size as Docker prints it (``1.0 MB``). Rows can be put in groups (``"shared"``, ``"own"``)
that get a colour each and a legend entry, e.g. to show which layers two images share.

It draws the ``(name, size)`` rows it is given and reads nothing else: no store access here.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from containerlab.image.progress import human

#: One colour per group, in order of first appearance (repeats after six groups).
GROUP_COLORS = ("#8ecae6", "#ffd166", "#95d5b2", "#cdb4db", "#f4a261", "#a8dadc")


def blob_sizes(
    rows: Sequence[tuple[str, int]],
    *,
    groups: Sequence[str] | None = None,
    log: bool = True,
    title: str = "an image's blobs and their sizes",
) -> Figure:
    """Horizontal bars, the first row on top, each labelled with its size.

    ``groups`` (one name per row) colours the bars by group and adds a legend. With ``log``
    (the default) the size axis is logarithmic, so a 300-byte config and a 30 MB layer both
    show. Each bar's ``gid`` is ``"bar:<name>"`` (tests and tools can find it).
    """
    if not rows:
        raise ValueError("nothing to draw: give at least one (name, size) row")
    names = [str(name) for name, _ in rows]
    sizes = [int(size) for _, size in rows]
    for name, size in zip(names, sizes, strict=True):
        if size < 0:
            raise ValueError(f"row {name!r} has a negative size {size}")
    if groups is not None and len(groups) != len(rows):
        raise ValueError(f"{len(groups)} groups for {len(rows)} rows: give one group per row")

    order: list[str] = []
    for g in groups or ():
        if g not in order:
            order.append(g)
    color_of = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(order)}
    colors = [color_of[g] for g in groups] if groups is not None else [GROUP_COLORS[0]] * len(rows)

    legend_room = 0.4 if groups is not None else 0.0
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4 + legend_room))
    ys = list(range(len(rows)))[::-1]  # the first row on top, as it reads in a listing
    # A zero-byte blob cannot sit on a log axis: draw it as one byte, labelled "0 B".
    widths = [max(s, 1) if log else s for s in sizes]
    bars = ax.barh(ys, widths, color=colors, edgecolor="#333333", height=0.6)
    for bar, name in zip(bars, names, strict=True):
        bar.set_gid(f"bar:{name}")
    ax.set_yticks(ys)
    ax.set_yticklabels(names, family="monospace")
    if log:
        ax.set_xscale("log")
        ax.set_xlim(0.8, max(widths) * 30)  # room for the size labels right of the bars
    else:
        ax.set_xlim(0, max(max(widths), 1) * 1.25)
    for y, width, size in zip(ys, widths, sizes, strict=True):
        ax.text(width * (1.15 if log else 1.0), y, f" {human(size)}", va="center", fontsize=9)
    ax.set_xlabel("bytes" + (" (log scale)" if log else ""))
    ax.set_title(title)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    height = fig.get_size_inches()[1]
    if groups is not None:
        # Under the axis, in one row: inside it, it would cover the longest bars.
        fig.legend(
            handles=[Patch(facecolor=color_of[g], edgecolor="#333333", label=g) for g in order],
            loc="lower center",
            ncol=len(order),
            frameon=False,
            fontsize=9,
        )
    fig.tight_layout(rect=(0, legend_room / height, 1, 1))
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig

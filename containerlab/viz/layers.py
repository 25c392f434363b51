"""A picture of an overlay's layer stack: which layer each file of the merged view comes from.

The layers are horizontal bands, the base layer at the bottom and the upper dir above them;
the merged view (what a container sees) is the band on top. Each path is a column: a box in
every layer that holds it, and a box in the merged view coloured like the layer it comes
from. Whiteouts are drawn as red crossed boxes, opaque directories with a dashed border, and
a path that a whiteout or an opaque directory hides is an empty dashed box in the merged view.

It draws what ``layers.layer_entries`` and ``layers.stack_view`` return and reads nothing
else: no kernel work here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from containerlab.layers import Entry

#: One colour per layer, bottom first (repeats after ten layers).
LAYER_COLORS = (
    "#8ecae6",
    "#95d5b2",
    "#ffd166",
    "#cdb4db",
    "#a8dadc",
    "#f4a261",
    "#b5e48c",
    "#ffafcc",
    "#bde0fe",
    "#e9c46a",
)
WHITEOUT_COLOR = "#e63946"  # a whiteout: "deleted here"
HIDDEN_COLOR = "#adb5bd"  # a path hidden in the merged view


def layer_color(index: int) -> str:
    """The fill colour of layer ``index`` (bottom first), in its band and in the merged view."""
    return LAYER_COLORS[index % len(LAYER_COLORS)]


def columns(entries: Sequence[Entry], *, dirs: bool = False) -> list[str]:
    """The paths drawn as columns, sorted: every non-directory of any layer, opaque dirs,
    and (``dirs=True``) every directory too."""
    # Plain directories only merge: drawing them would clutter the picture.
    return sorted({e.path for e in entries if dirs or e.kind != "dir"})


def layer_stack(
    view: Mapping[str, int],
    entries: Sequence[Entry],
    *,
    names: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    dirs: bool = False,
    title: str = "overlay: layers (bottom first) and the merged view",
) -> Figure:
    """Draw the stack: one band per layer, bottom first, and the merged view on top.

    ``view`` is ``layers.stack_view(...)`` (path -> layer index), ``entries`` is
    ``layers.layer_entries(...)`` for the same layers. ``names`` label the layers (default
    ``layer 0``...; the last one is usually the upper dir); ``paths`` picks the columns
    (default: :func:`columns`). Each box carries a ``gid`` (``layer:I:PATH`` in a band,
    ``merged:PATH`` on top) so tests and notebooks can find it. The figure is detached
    from pyplot: show it as a cell's value.
    """
    n = max([e.layer + 1 for e in entries] + [i + 1 for i in view.values()] + [len(names or [])])
    labels = list(names) if names else [f"layer {i}" for i in range(n)]
    labels += [f"layer {i}" for i in range(len(labels), n)]
    cols = list(paths) if paths is not None else columns(entries, dirs=dirs)
    held = {(e.layer, e.path): e.kind for e in entries}

    width = max(6.0, 1.15 * len(cols) + 2.2)
    fig, ax = plt.subplots(figsize=(width, 0.75 * (n + 1) + 1.5))
    merged_y = n + 0.35
    ax.set_xlim(-2.1, len(cols))
    ax.set_ylim(-0.6, merged_y + 1.1)
    ax.axis("off")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")

    # The bands and their names, bottom first.
    for i in range(n):
        ax.add_patch(Rectangle((-2.05, i + 0.04), len(cols) + 2.0, 0.92, color="#f8f9fa", lw=0))
        ax.text(-2.0, i + 0.5, labels[i], va="center", fontsize=9, fontweight="bold")
    ax.add_patch(Rectangle((-2.05, merged_y + 0.04), len(cols) + 2.0, 0.92, color="#e9ecef", lw=0))
    ax.text(-2.0, merged_y + 0.5, "merged view", va="center", fontsize=9, fontweight="bold")
    ax.axhline(n + 0.17, xmin=0.0, xmax=1.0, color="#495057", lw=1, ls=":")

    for x, path in enumerate(cols):
        name = path.rsplit("/", 1)[-1] or "/"
        for i in range(n):
            kind = held.get((i, path))
            if kind is None:
                continue
            box = Rectangle((x + 0.06, i + 0.14), 0.88, 0.72, lw=1, ec="#343a40")
            box.set_gid(f"layer:{i}:{path}")
            text, color = name, "#212529"
            if kind == "whiteout":
                box.set_facecolor("white")
                box.set_edgecolor(WHITEOUT_COLOR)
                box.set_hatch("xx")
                text, color = f"✕ {name}", WHITEOUT_COLOR
            elif kind == "opaque":
                box.set_facecolor(layer_color(i))
                box.set_linestyle("--")
                text = f"{name}/ opaque"
            else:
                box.set_facecolor(layer_color(i))
                if kind == "dir":
                    text = f"{name}/"
                elif kind == "symlink":
                    text = f"{name} →"
            ax.add_patch(box)
            ax.text(
                x + 0.5,
                i + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color=color,
                bbox={"fc": "white", "ec": "none", "pad": 1} if kind == "whiteout" else None,
            )
        src = view.get(path)
        top = Rectangle((x + 0.06, merged_y + 0.14), 0.88, 0.72, lw=1)
        top.set_gid(f"merged:{path}")
        if src is None:  # whited out, or below an opaque dir: the container does not see it
            top.set_facecolor("white")
            top.set_edgecolor(HIDDEN_COLOR)
            top.set_linestyle("--")
            ax.text(
                x + 0.5,
                merged_y + 0.5,
                "(hidden)",
                ha="center",
                va="center",
                fontsize=7,
                color=HIDDEN_COLOR,
            )
        else:
            top.set_facecolor(layer_color(src))
            top.set_edgecolor("#343a40")
            ax.text(x + 0.5, merged_y + 0.5, name, ha="center", va="center", fontsize=7)
            # A faint line from the winning box up to the merged view.
            ax.plot(
                [x + 0.5, x + 0.5],
                [src + 0.86, merged_y + 0.14],
                color="#495057",
                lw=0.6,
                ls=":",
                zorder=0,
            )
        ax.add_patch(top)
        ax.text(x + 0.5, -0.1, path, ha="center", va="top", fontsize=7, family="monospace")

    legend = [Patch(color=layer_color(i), label=labels[i]) for i in range(n)]
    legend += [
        Patch(facecolor="white", edgecolor=WHITEOUT_COLOR, hatch="xx", label="whiteout (0/0)"),
        Patch(facecolor="white", edgecolor=HIDDEN_COLOR, ls="--", label="hidden in the view"),
    ]
    fig.legend(
        handles=legend, loc="lower center", ncol=min(len(legend), 6), fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig

"""A picture of a build: one bar per step, how long it took, and whether the cache answered.

A Dockerfile build is a list of steps. Each one either ran (a cache miss: a RUN started a
container, a COPY placed files) or was answered by the build cache (a hit: ``CACHED``, a few
tenths of a millisecond). Its bar's length is its duration, on a logarithmic scale by default
so that a cached step and a step that ran both show; its colour says hit or miss. Steps that
add a layer (RUN, COPY, ADD) are annotated with the layer's size; the others (ENV, CMD,
WORKDIR...) change only the image config, and are drawn hatched and annotated "config only".
A FROM is the stage's base image: grey.

It draws the ``BuildResult`` (or the steps) it is given and reads nothing else.
"""

from __future__ import annotations

from typing import Protocol

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from containerlab.image.progress import human

MISS = "#f4a261"  # the step ran: a cache miss
HIT = "#95d5b2"  # the cache answered: CACHED
BASE = "#d9d9d9"  # FROM: the stage's starting point
CONFIG_HATCH = "///"  # a step that changes only the config (no layer)
LAYER_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})


class Step(Protocol):
    """What is drawn of a step (``builder.StepResult`` has these fields)."""

    stage: int
    number: int
    text: str
    cached: bool
    seconds: float
    layer_size: int


def kind(step: Step) -> str:
    """``"base"`` (FROM), ``"layer"`` (RUN, COPY, ADD) or ``"config"`` (everything else)."""
    keyword = step.text.split(None, 1)[0].upper() if step.text.strip() else ""
    if keyword == "FROM":
        return "base"
    return "layer" if keyword in LAYER_KEYWORDS else "config"


def _steps(result: object) -> list[Step]:
    steps = list(getattr(result, "steps", result))  # a BuildResult, or its steps
    if not steps:
        raise ValueError("nothing to draw: the build has no steps")
    for s in steps:
        if s.seconds < 0 or s.layer_size < 0:
            raise ValueError(f"step {s.number} has a negative duration or layer size")
    return steps


def note(step: Step) -> str:
    """The words beside a step's bar: what it made, and whether it ran."""
    what = {
        "base": "base image",
        "layer": f"layer {human(step.layer_size)}",
        "config": "config only",
    }[kind(step)]
    if kind(step) == "base":
        return what
    return f"{'CACHED' if step.cached else 'ran'} · {what}"


def describe(result: object) -> str:
    """The picture as text, one line per step, without durations (stable from run to run)."""
    lines = []
    for s in _steps(result):
        first = s.text.strip().splitlines()[0] if s.text.strip() else ""
        lines.append(f"[{s.number:>2}] {note(s):<24} {first}")
    return "\n".join(lines)


def _label(step: Step, width: int, stages: int) -> str:
    first = step.text.strip().splitlines()[0] if step.text.strip() else ""
    if len(first) > width:
        first = first[: width - 1] + "…"
    prefix = f"s{step.stage} " if stages > 1 else ""
    return f"{prefix}[{step.number}] {first}"


def build_steps(
    result: object,
    *,
    log: bool = True,
    title: str = "the build, step by step",
    min_seconds: float = 1e-4,
    label_width: int = 34,
) -> Figure:
    """Horizontal bars, the first step on top: length = seconds, colour = hit or miss.

    ``result`` is a ``BuildResult`` or a sequence of ``StepResult``. With ``log`` (the default)
    the time axis is logarithmic and every bar is at least ``min_seconds`` long, so a cached
    step (well under a millisecond) stays visible beside one that ran for a second. Bars
    carry the gid ``"step:<number>"`` and their annotations ``"note:<number>"``.
    """
    steps = _steps(result)
    stages = len({s.stage for s in steps})
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(steps) + 1.8))
    ys = list(range(len(steps)))[::-1]
    widths = [max(s.seconds, min_seconds) if log else s.seconds for s in steps]
    for y, s, width in zip(ys, steps, widths, strict=True):
        k = kind(s)
        color = BASE if k == "base" else HIT if s.cached else MISS
        (bar,) = ax.barh(
            [y],
            [width],
            color=color,
            edgecolor="#333333",
            height=0.6,
            hatch=CONFIG_HATCH if k == "config" else None,
        )
        bar.set_gid(f"step:{s.number}")
    longest = max(widths) if widths else 1.0
    if log:
        ax.set_xscale("log")
        # At least a second of axis: a fully cached build then looks as quick as it is.
        ax.set_xlim(min_seconds * 0.8, max(longest, 1.0) * 30)
    else:
        ax.set_xlim(0, max(longest, 1e-3) * 1.6)
    for y, s, width in zip(ys, steps, widths, strict=True):
        text = ax.text(
            width * (1.15 if log else 1.0) + (0 if log else longest * 0.02),
            y,
            note(s),
            va="center",
            fontsize=9,
            fontweight="bold" if kind(s) == "layer" and not s.cached else "normal",
        )
        text.set_gid(f"note:{s.number}")
    # A thin line between stages: a multi-stage build reads as separate images.
    for i in range(1, len(steps)):
        if steps[i].stage != steps[i - 1].stage:
            ax.axhline(ys[i] + 0.5, color="#888888", linestyle="--", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([_label(s, label_width, stages) for s in steps], family="monospace")
    ax.set_xlabel("seconds" + (" (log scale)" if log else ""))
    ran = sum(1 for s in steps if kind(s) != "base" and not s.cached)
    cached = sum(1 for s in steps if kind(s) != "base" and s.cached)
    ax.set_title(f"{title}\n{ran} ran, {cached} cached", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [
        Patch(facecolor=MISS, edgecolor="#333333", label="ran (cache miss)"),
        Patch(facecolor=HIT, edgecolor="#333333", label="CACHED (hit)"),
        Patch(facecolor="white", edgecolor="#333333", hatch=CONFIG_HATCH, label="config only"),
        Patch(facecolor=BASE, edgecolor="#333333", label="FROM (base)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, fontsize=9)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig

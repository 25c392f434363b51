"""The build picture: one bar per step, hit/miss colours, layer sizes, config-only hatching."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from containerlab.build.builder import BuildResult, StepResult
from containerlab.viz import build as vb

STEPS = (
    StepResult(0, 1, "FROM busybox AS builder", True, 0.0002, 0),
    StepResult(0, 2, "RUN head -c 3000000 /dev/urandom > /opt/blob", False, 0.8, 3_001_320),
    StepResult(0, 3, "WORKDIR /src", False, 0.002, 0),
    StepResult(1, 4, "FROM busybox", True, 0.0001, 0),
    StepResult(1, 5, "COPY --from=builder /src/greet /usr/local/bin/", True, 0.0004, 202),
    StepResult(1, 6, 'CMD ["greet"]', True, 0.0, 0),
)
RESULT = BuildResult("sha256:" + "a" * 64, "sha256:" + "b" * 64, STEPS)


def bars(fig: Figure) -> dict[str, object]:
    return {p.get_gid(): p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("step:")}


def notes(fig: Figure) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for t in fig.axes[0].texts if t.get_gid()}


def test_one_bar_per_step_first_on_top_length_is_the_duration():
    fig = vb.build_steps(RESULT)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    b = bars(fig)
    assert set(b) == {f"step:{n}" for n in range(1, 7)}
    assert b["step:2"].get_width() == pytest.approx(0.8)
    ys = [b[f"step:{n}"].get_y() for n in range(1, 7)]
    assert ys == sorted(ys, reverse=True)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # Two stages: each label says which; long commands are cut with an ellipsis.
    assert labels[0] == "s0 [1] FROM busybox AS builder"
    assert labels[1].startswith("s0 [2] RUN head -c") and labels[1].endswith("…")
    assert labels[3] == "s1 [4] FROM busybox"


def test_hits_and_misses_are_coloured_config_steps_hatched():
    b = bars(vb.build_steps(RESULT))
    assert to_hex(b["step:2"].get_facecolor()) == vb.MISS
    assert to_hex(b["step:3"].get_facecolor()) == vb.MISS
    assert to_hex(b["step:5"].get_facecolor()) == vb.HIT
    assert to_hex(b["step:6"].get_facecolor()) == vb.HIT
    assert to_hex(b["step:1"].get_facecolor()) == vb.BASE
    hatched = {gid for gid, p in b.items() if p.get_hatch()}
    assert hatched == {"step:3", "step:6"}  # WORKDIR and CMD: config only


def test_layer_sizes_and_config_only_are_written_beside_the_bars():
    n = notes(vb.build_steps(RESULT))
    assert n == {
        "note:1": "base image",
        "note:2": "ran · layer 3.0 MB",
        "note:3": "ran · config only",
        "note:4": "base image",
        "note:5": "CACHED · layer 202 B",
        "note:6": "CACHED · config only",
    }


def test_log_scale_keeps_a_cached_step_visible():
    fig = vb.build_steps(RESULT)
    assert fig.axes[0].get_xscale() == "log"
    assert bars(fig)["step:6"].get_width() == pytest.approx(1e-4)  # 0 s drawn at the floor
    linear = vb.build_steps(RESULT, log=False)
    assert linear.axes[0].get_xscale() == "linear"
    assert bars(linear)["step:6"].get_width() == 0


def test_title_counts_what_ran_and_a_line_separates_stages():
    fig = vb.build_steps(STEPS, title="first build")  # the steps alone are enough
    assert fig.axes[0].get_title() == "first build\n2 ran, 2 cached"
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "ran (cache miss)",
        "CACHED (hit)",
        "config only",
        "FROM (base)",
    ]


def test_describe_is_the_picture_as_stable_text():
    text = vb.describe(RESULT)
    assert text.splitlines()[1].startswith("[ 2] ran · layer 3.0 MB")
    assert "0.8" not in text  # no durations: they change from run to run
    assert [vb.kind(s) for s in STEPS] == ["base", "layer", "config", "base", "layer", "config"]


def test_the_figure_is_detached_from_pyplot():
    before = plt.get_fignums()
    vb.build_steps(RESULT)
    assert plt.get_fignums() == before


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((), "no steps"),
        ((StepResult(0, 1, "RUN x", False, -1.0, 10),), "negative"),
        ((StepResult(0, 1, "RUN x", False, 1.0, -10),), "negative"),
    ],
)
def test_bad_input_is_refused_with_the_reason(steps, message):
    with pytest.raises(ValueError, match=message):
        vb.build_steps(steps)


def test_a_real_build_draws_its_cache_hits(tmp_path):
    from containerlab.build import builder

    (tmp_path / "Dockerfile").write_text("FROM busybox\nENV A=1\nRUN echo hi > /hi\nCMD cat /hi\n")
    first = builder.build(tmp_path, out=lambda _line: None)
    again = builder.build(tmp_path, out=lambda _line: None)
    assert [vb.kind(s) for s in first.steps] == ["base", "config", "layer", "config"]
    assert to_hex(bars(vb.build_steps(first))["step:3"].get_facecolor()) == vb.MISS
    b = bars(vb.build_steps(again))
    assert {to_hex(b[f"step:{n}"].get_facecolor()) for n in (2, 3, 4)} == {vb.HIT}
    assert notes(vb.build_steps(again))["note:3"].startswith("CACHED · layer ")

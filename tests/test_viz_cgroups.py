"""The cgroup pictures, the sampler and the slider: drawn from given samples, read via the API."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from containerlab import cgroups
from containerlab.cgroups import CgroupError, Stats
from containerlab.viz import cgroups as vc

MiB = 1 << 20


def stats(t: float, mem: int | None = 0, **kw) -> Stats:
    values = dict(
        memory_current=mem,
        memory_peak=mem,
        memory_limit=None,
        oom=None,
        oom_kill=0,
        cpu_usage_usec=0,
        nr_periods=0,
        nr_throttled=0,
        throttled_usec=0,
        pids_current=1,
    )
    values.update(kw)
    return Stats(**values, taken_at=t)


# A hog growing 8 MiB per 0.1 s into a 32 MiB limit, killed at 0.4 s.
HOG = [
    stats(10.0, 2 * MiB, memory_limit=32 * MiB),
    stats(10.1, 10 * MiB, memory_limit=32 * MiB),
    stats(10.2, 18 * MiB, memory_limit=32 * MiB),
    stats(10.3, 31 * MiB, memory_limit=32 * MiB),
    stats(10.4, 0, memory_limit=32 * MiB, oom_kill=1),
    stats(10.5, 0, memory_limit=32 * MiB, oom_kill=1),
]


def busy(share: float, n: int = 21, dt: float = 0.05, throttle: bool = False) -> list[Stats]:
    """A loop using ``share`` of a core, sampled every ``dt`` seconds."""
    out = []
    for i in range(n):
        t = i * dt
        periods = int(t / 0.1)
        out.append(
            stats(
                5.0 + t,
                cpu_usage_usec=int(share * t * 1e6),
                nr_periods=periods if throttle else 0,
                nr_throttled=periods if throttle else 0,
                throttled_usec=int((1 - share) * t * 1e6) if throttle else 0,
            )
        )
    return out


# --- pure helpers -----------------------------------------------------------------------------
def test_elapsed_memory_and_oom_kills():
    assert vc.elapsed(HOG) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert vc.memory_mib(HOG)[:4] == [2, 10, 18, 31]
    assert vc.oom_kills(HOG) == [(pytest.approx(0.4), 1)]
    assert vc.elapsed([]) == [] and vc.oom_kills([]) == []
    nan = vc.memory_mib([stats(0, None)])[0]
    assert nan != nan  # no memory controller: NaN, not 0


def test_cpu_cores_over_a_window_and_on_average():
    half = busy(0.5)
    points = vc.cpu_cores(half, window=0.1)
    assert points and all(c == pytest.approx(0.5) for _, c in points)
    assert points[0][0] == pytest.approx(0.1)  # the first point needs a whole window
    assert vc.average_cores(half) == pytest.approx(0.5)
    assert vc.average_cores(half[:1]) == 0.0
    assert vc.cpu_cores([stats(0, cpu_usage_usec=None)]) == []


def test_throttled_time_counts_from_the_first_sample():
    limited = busy(0.5, throttle=True)
    ms = vc.throttled_ms(limited)
    assert ms[0] == 0 and ms[-1] == pytest.approx(500, abs=1)
    assert vc.throttled_ms(busy(1.0)) == [0.0] * 21


# --- figures ----------------------------------------------------------------------------------
def gids(fig: Figure, ax: int = 0) -> dict[str, object]:
    a = fig.axes[ax]
    return {o.get_gid(): o for o in [*a.lines, *a.collections] if o.get_gid()}


def test_memory_over_time_draws_usage_limit_and_the_kill():
    fig = vc.memory_over_time(HOG)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    g = gids(fig)
    assert list(g["memory"].get_ydata()[:4]) == [2, 10, 18, 31]
    assert list(g["limit"].get_ydata()) == [32, 32]  # the limit the samples report
    (x, y), *_ = g["oom_kill"].get_offsets()
    assert (x, y) == (pytest.approx(0.4), 31)  # at the memory reached before the kill
    assert fig.axes[0].get_ylim()[1] > 32
    assert not plt.get_fignums()  # detached from pyplot: shown once, as a cell's value


def test_memory_over_time_without_limit_or_kill():
    fig = vc.memory_over_time([stats(0, MiB), stats(1, 2 * MiB)], title="free")
    g = gids(fig)
    assert set(g) == {"memory"}
    assert fig.axes[0].get_title() == "free"
    assert vc.memory_over_time([], 16 * MiB).axes  # nothing sampled: still a figure


def test_cpu_compare_draws_use_and_throttling_per_label():
    fig = vc.cpu_compare({"unlimited": busy(1.0), "--cpus 0.5": busy(0.5, throttle=True)})
    assert len(fig.axes) == 2
    top, bottom = gids(fig, 0), gids(fig, 1)
    assert set(top) == {"cpu:unlimited", "cpu:--cpus 0.5"}
    assert list(top["cpu:--cpus 0.5"].get_ydata()) == pytest.approx([0.5] * 19)
    assert list(top["cpu:unlimited"].get_ydata()) == pytest.approx([1.0] * 19)
    assert bottom["throttled:--cpus 0.5"].get_ydata()[-1] == pytest.approx(500, abs=1)
    assert max(bottom["throttled:unlimited"].get_ydata()) == 0
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "--cpus 0.5: throttled in 10 periods" in labels


def test_figure_png_is_a_png():
    assert vc.figure_png(vc.memory_over_time(HOG)).startswith(b"\x89PNG\r\n\x1a\n")


# --- the sampler ------------------------------------------------------------------------------
class FakeCgroup:
    """Reads like a cgroup whose memory grows by 1 MiB per reading; fails after ``fail_after``."""

    def __init__(self, fail_after: int | None = None):
        self.reads = 0
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def read(self) -> Stats:
        with self.lock:
            self.reads += 1
            if self.fail_after is not None and self.reads > self.fail_after:
                raise CgroupError("cgroup clab-x does not exist")
            return stats(time.monotonic(), self.reads * MiB)


def test_sampler_reads_in_the_background_until_stopped():
    cg = FakeCgroup()
    with vc.Sampler(cg, every_ms=5) as s:
        assert len(s.samples) >= 1  # a first reading at once
        time.sleep(0.1)
        assert s.running
    assert not s.running and s.error is None
    n = len(s.samples)
    assert 5 <= n <= cg.reads
    assert [x.memory_current for x in s.samples] == sorted(x.memory_current for x in s.samples)
    time.sleep(0.03)
    assert len(s.samples) == n  # stopped means stopped
    with pytest.raises(RuntimeError, match="already been started"):
        s.start()


def test_sampler_stops_at_an_error_or_the_sample_cap():
    s = vc.Sampler(FakeCgroup(fail_after=3), every_ms=1).start()
    deadline = time.monotonic() + 5
    while s.running and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(s.stop()) == 3 and isinstance(s.error, CgroupError)
    capped = vc.Sampler(FakeCgroup(), every_ms=1, max_samples=4).start()
    deadline = time.monotonic() + 5
    while capped.running and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(capped.stop()) == 4 and capped.error is None


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
def test_sampler_on_a_real_cgroup():
    with cgroups.cgroup(f"clab-vizt-{os.getpid()}", cgroups.Limits(pids=4)) as cg:
        p = subprocess.Popen(cg.join_command(["sleep", "30"]))
        try:
            deadline = time.monotonic() + 10
            while p.pid not in cg.pids() and time.monotonic() < deadline:
                time.sleep(0.01)
            with vc.Sampler(cg, every_ms=10) as s:
                time.sleep(0.1)
        finally:
            p.kill()
            p.wait()
    assert len(s.samples) >= 3 and s.error is None
    assert all(x.pids_current == 1 for x in s.samples)
    assert vc.elapsed(s.samples)[-1] >= 0.05


# --- the slider -------------------------------------------------------------------------------
def test_memory_explorer_runs_the_experiment_at_the_slider_value():
    asked = []

    def experiment(limit: int) -> list[Stats]:
        asked.append(limit)
        return [
            stats(0, 0, memory_limit=limit),
            stats(0.1, limit - MiB, memory_limit=limit),
            stats(0.2, 0, memory_limit=limit, oom_kill=1),
        ]

    ex = vc.MemoryExplorer(experiment, value_mib=48)
    assert repr(ex) == "<MemoryExplorer: limit slider 16..128 MiB (step 16), button 'run the hog'>"
    bundle = ex._repr_mimebundle_()
    assert bundle["text/plain"] == repr(ex)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    samples = ex.run()
    assert asked == [48 * MiB] and len(samples) == 3
    assert bytes(ex.image.value).startswith(b"\x89PNG")
    assert "limit 48 MiB" in ex.status.value and "OOM kills: 1" in ex.status.value
    ex.slider.value = 32
    ex.button.click()  # what a learner's click does
    assert asked == [48 * MiB, 32 * MiB] and not ex.button.disabled
    ex.run(64)
    assert ex.slider.value == 64 and [r[0] for r in ex.runs] == [48 * MiB, 32 * MiB, 64 * MiB]
    ex.close()


def test_memory_explorer_shows_a_failed_experiment():
    def experiment(limit: int) -> list[Stats]:
        raise CgroupError("the kernel refused it")

    ex = vc.MemoryExplorer(experiment)
    with pytest.raises(CgroupError):
        ex.run()
    assert "failed" in ex.status.value and not ex.button.disabled and ex.runs == []
    ex.close()

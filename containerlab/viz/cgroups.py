"""Pictures of a cgroup's counters over time: memory up to its limit, CPU use and throttling.

A cgroup's files are gauges and counters read at one instant (``Cgroup.read()`` returns them
all as one ``cgroups.Stats``). To see a limit act you need them over time: :class:`Sampler`
reads a cgroup every few milliseconds into a list, through the cgroups API and nothing else,
and the functions here draw such lists. :class:`MemoryExplorer` puts a slider and a button
around an experiment the caller supplies (the caller does the kernel work; this module only
reads and draws).
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from containerlab.cgroups import Stats

MiB = 1 << 20
LIMIT_COLOR = "#e63946"  # the limit line and the OOM kill marks
SERIES_COLORS = ("#1d3557", "#f4a261", "#2a9d8f", "#8d99ae", "#9b5de5")


# --- sampling ---------------------------------------------------------------------------------
class Sampler:
    """Read ``cgroup`` (anything with a ``read() -> Stats``) every ``every_ms`` into ``samples``.

    A background thread does the reading, so the caller can start a process and wait for it
    meanwhile. Use it as a context manager, or call :meth:`start` and :meth:`stop`. Sampling
    ends by itself after ``max_samples`` readings, or when a reading fails (the cgroup was
    removed): the error is kept in ``error``.
    """

    def __init__(self, cgroup: Any, every_ms: float = 10.0, max_samples: int = 100_000):
        self.cgroup = cgroup
        self.every = every_ms / 1000.0  # seconds between readings
        self.max_samples = max_samples
        self.samples: list[Stats] = []  # the readings, oldest first
        self.error: BaseException | None = None  # why sampling ended early, if it did
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Take a first reading now, then keep reading in the background."""
        if self._thread is not None:
            raise RuntimeError("this sampler has already been started; make a new one")
        self._read_once()
        self._thread = threading.Thread(target=self._loop, name="clab-cgroup-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Stats]:
        """Stop reading (after one last reading) and return the samples."""
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            if self.error is None and len(self.samples) < self.max_samples:
                self._read_once()
        self._stop.set()
        return self.samples

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _read_once(self) -> bool:
        try:
            self.samples.append(self.cgroup.read())
        except Exception as e:  # a removed cgroup, or a file the kernel took away
            self.error = e
            return False
        return True

    def _loop(self) -> None:
        next_at = time.monotonic()
        while len(self.samples) < self.max_samples:
            next_at += self.every
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return
            if not self._read_once():
                return

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- what the samples say (pure functions) --------------------------------------------------
def elapsed(samples: Sequence[Stats]) -> list[float]:
    """Each sample's time in seconds since the first one."""
    if not samples:
        return []
    t0 = samples[0].taken_at
    return [s.taken_at - t0 for s in samples]


def memory_mib(samples: Sequence[Stats]) -> list[float]:
    """Each sample's ``memory_current`` in MiB (NaN where the kernel gave none)."""
    return [math.nan if s.memory_current is None else s.memory_current / MiB for s in samples]


def oom_kills(samples: Sequence[Stats]) -> list[tuple[float, int]]:
    """When the OOM killer struck: ``(seconds since the first sample, kills then)``."""
    out = []
    t = elapsed(samples)
    for i in range(1, len(samples)):
        if samples[i].oom_kill > samples[i - 1].oom_kill:
            out.append((t[i], samples[i].oom_kill - samples[i - 1].oom_kill))
    return out


def average_cores(samples: Sequence[Stats]) -> float:
    """CPU used over the whole span, in cores (1.0: one CPU all the time)."""
    usable = [s for s in samples if s.cpu_usage_usec is not None]
    if len(usable) < 2 or usable[-1].taken_at <= usable[0].taken_at:
        return 0.0
    used = (usable[-1].cpu_usage_usec - usable[0].cpu_usage_usec) / 1e6
    return used / (usable[-1].taken_at - usable[0].taken_at)


def cpu_cores(samples: Sequence[Stats], window: float = 0.1) -> list[tuple[float, float]]:
    """CPU use over time, in cores: ``(seconds since the first sample, cores)``.

    Each point is the usage over the last ``window`` seconds (at least): CFS hands out
    quota per 100 ms period, so shorter windows only show the on/off of each period.
    """
    out: list[tuple[float, float]] = []
    usable = [s for s in samples if s.cpu_usage_usec is not None]
    if not usable:
        return out
    t0 = samples[0].taken_at
    window -= 1e-9  # sample times are floats: 5.1 - 5.0 is a hair below 0.1
    j = 0
    for i, s in enumerate(usable):
        while j + 1 < i and s.taken_at - usable[j + 1].taken_at >= window:
            j += 1
        prev = usable[j]
        dt = s.taken_at - prev.taken_at
        if i == j or dt < window:
            continue
        out.append((s.taken_at - t0, (s.cpu_usage_usec - prev.cpu_usage_usec) / 1e6 / dt))
    return out


def throttled_ms(samples: Sequence[Stats]) -> list[float]:
    """Time spent throttled since the first sample, in milliseconds, per sample."""
    if not samples:
        return []
    base = samples[0].throttled_usec
    return [(s.throttled_usec - base) / 1000.0 for s in samples]


# --- figures --------------------------------------------------------------------------------
def memory_over_time(
    samples: Sequence[Stats], limit: int | None = None, *, title: str | None = None
) -> Figure:
    """Memory charged to the cgroup over time (MiB), the limit as a dashed line, OOM kills.

    ``limit`` is in bytes (default: the limit the samples report). Gids for tests and
    notebooks: ``memory`` (the line), ``limit`` (the limit line), ``oom_kill`` (the marks).
    """
    if limit is None:
        limit = next((s.memory_limit for s in samples if s.memory_limit), None)
    t, mem = elapsed(samples), memory_mib(samples)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    (line,) = ax.plot(t, mem, color=SERIES_COLORS[0], lw=1.8, label="memory in use")
    line.set_gid("memory")
    if limit is not None:
        lim = ax.axhline(limit / MiB, color=LIMIT_COLOR, ls="--", lw=1.2)
        lim.set_label(f"limit ({limit / MiB:g} MiB)")
        lim.set_gid("limit")
    kills = oom_kills(samples)
    if kills:
        # Mark each kill at the memory reached just before it.
        xs = [k[0] for k in kills]
        ys = [max((m for tt, m in zip(t, mem, strict=True) if tt <= x), default=0) for x in xs]
        marks = ax.scatter(xs, ys, marker="X", s=90, color=LIMIT_COLOR, zorder=5, label="OOM kill")
        marks.set_gid("oom_kill")
    top = max([m for m in mem if not math.isnan(m)] + [(limit or 0) / MiB, 1.0])
    ax.set_ylim(0, top * 1.15)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_title(title or "memory of the cgroup over time")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig


def cpu_compare(
    series_by_label: Mapping[str, Sequence[Stats]],
    *,
    window: float = 0.1,
    title: str | None = None,
) -> Figure:
    """CPU use (cores, top) and time spent throttled (ms, bottom) of several cgroups.

    ``series_by_label`` maps a label (``"--cpus 0.5"``) to the samples of one cgroup, all
    taken over the same span. Gids: ``cpu:LABEL`` and ``throttled:LABEL`` (the lines).
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.2), sharex=True)
    t0 = min((s[0].taken_at for s in series_by_label.values() if s), default=0.0)
    for n, (label, samples) in enumerate(series_by_label.items()):
        color = SERIES_COLORS[n % len(SERIES_COLORS)]
        shift = samples[0].taken_at - t0 if samples else 0.0
        points = cpu_cores(samples, window)
        (line,) = top.plot(
            [p[0] + shift for p in points], [p[1] for p in points], color=color, lw=1.8, label=label
        )
        line.set_gid(f"cpu:{label}")
        throttles = samples[-1].nr_throttled - samples[0].nr_throttled if samples else 0
        (tl,) = bottom.plot(
            [x + shift for x in elapsed(samples)],
            throttled_ms(samples),
            color=color,
            lw=1.8,
            label=f"{label}: throttled in {throttles} periods",
        )
        tl.set_gid(f"throttled:{label}")
    top.set_ylabel("CPU (cores)")
    top.set_ylim(bottom=0, top=max(1.4, top.get_ylim()[1] * 1.15))
    top.set_title(title or "CPU use and throttling")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("time throttled (ms)")
    bottom.set_xlabel("seconds")
    bottom.set_ylim(bottom=0)
    bottom.set_xlim(left=0)
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --- a slider and a button around an experiment ---------------------------------------------
class MemoryExplorer:
    """A memory-limit slider, a button that reruns ``experiment``, and its plot.

    ``experiment(limit_bytes)`` is the caller's: it makes the cgroup, runs something in it
    and returns the samples (see :class:`Sampler`). :meth:`run` calls it with the slider's
    value and redraws; the button does the same. The plot is an ``ipywidgets.Image``, so a
    rerun updates the page through widget messages. Display it as a cell's value.
    """

    def __init__(
        self,
        experiment: Callable[[int], Sequence[Stats]],
        *,
        min_mib: int = 16,
        max_mib: int = 128,
        step_mib: int = 16,
        value_mib: int = 48,
        title: str = "a memory hog under the limit",
    ):
        import ipywidgets as w

        self.experiment = experiment
        self.title = title
        self.runs: list[tuple[int, list[Stats]]] = []  # (limit in bytes, samples) per run
        self.slider = w.IntSlider(
            value=value_mib,
            min=min_mib,
            max=max_mib,
            step=step_mib,
            description="limit (MiB)",
            continuous_update=False,
        )
        self.button = w.Button(description="run the hog", icon="play")
        self.button.on_click(lambda _b: self.run())
        self.status = w.HTML("")
        self.image = w.Image(format="png")
        self.widget = w.VBox([w.HBox([self.slider, self.button]), self.status, self.image])

    def run(self, mib: int | None = None) -> list[Stats]:
        """Run the experiment at ``mib`` (default: the slider's value) and redraw."""
        if mib is not None:
            self.slider.value = mib
        limit = self.slider.value * MiB
        self.button.disabled = True
        self.status.value = f"running with a limit of {self.slider.value} MiB..."
        try:
            samples = list(self.experiment(limit))
        except Exception as e:
            self.status.value = f"<b>failed:</b> {type(e).__name__}: {e}"
            raise
        finally:
            self.button.disabled = False
        self.runs.append((limit, samples))
        fig = memory_over_time(samples, limit, title=f"{self.title}: limit {self.slider.value} MiB")
        self.image.value = figure_png(fig)
        peak = max((s.memory_peak or s.memory_current or 0 for s in samples), default=0)
        kills = samples[-1].oom_kill - samples[0].oom_kill if samples else 0
        self.status.value = (
            f"limit {self.slider.value} MiB: peak {peak / MiB:.1f} MiB, "
            f"OOM kills: {kills}, {len(samples)} samples"
        )
        return samples

    def close(self) -> None:
        self.widget.close()

    def __repr__(self) -> str:
        return (
            f"<MemoryExplorer: limit slider {self.slider.min}..{self.slider.max} MiB "
            f"(step {self.slider.step}), button '{self.button.description}'>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):
            data = data[0]
        return {**(data or {}), "text/plain": repr(self)}


__all__: Sequence[str] = (
    "MemoryExplorer",
    "Sampler",
    "average_cores",
    "cpu_compare",
    "cpu_cores",
    "elapsed",
    "figure_png",
    "memory_mib",
    "memory_over_time",
    "oom_kills",
    "throttled_ms",
)

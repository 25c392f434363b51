"""Progress of a pull or a push, one line (or one bar) per blob plus a total.

An image moves as a handful of blobs, each named by its digest. The registry client only
calls three methods, so the same transfer can draw on a terminal, in a notebook or nowhere:

- ``start(digest, total)``: a blob of ``total`` bytes is about to move (called for every
  blob before the first byte moves, so the total of the image is known up front);
- ``advance(digest, n)``: ``n`` more bytes of it moved;
- ``done(digest, status)``: it is finished, and how: ``"exists"`` (already there, skipped),
  ``"mounted"`` (borrowed from another repository of the registry), ``"pulled"``,
  ``"pushed"``, or ``"failed"``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

# Redraw at most this often: a 30 MB layer arrives in hundreds of 64 kB reads, and
# repainting a terminal or sending a widget message for each would cost more than the read.
_MIN_INTERVAL = 0.1


class Progress(Protocol):
    """What the registry client reports to."""

    def start(self, digest: str, total: int) -> None: ...

    def advance(self, digest: str, n: int) -> None: ...

    def done(self, digest: str, status: str) -> None: ...


@dataclass
class _Blob:
    total: int  # bytes announced by start()
    moved: int = 0  # bytes reported by advance()
    status: str = ""  # set by done(); empty while moving


def short(digest: str) -> str:
    """The 12 hex digits Docker shows for a blob."""
    return digest.split(":", 1)[-1][:12]


def human(n: float) -> str:
    """Decimal sizes as Docker prints them: ``512 B``, ``1.2 kB``, ``30.4 MB``."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


class _Tally:
    """The bookkeeping both displays share."""

    def __init__(self) -> None:
        self.blobs: dict[str, _Blob] = {}

    def _start(self, digest: str, total: int) -> None:
        self.blobs[digest] = _Blob(total)

    def _advance(self, digest: str, n: int) -> None:
        self.blobs.setdefault(digest, _Blob(0)).moved += n

    def _done(self, digest: str, status: str) -> None:
        blob = self.blobs.setdefault(digest, _Blob(0))
        blob.status = status
        if status in ("exists", "mounted", "pulled", "pushed"):
            blob.moved = blob.total

    @property
    def total(self) -> int:
        return sum(b.total for b in self.blobs.values())

    @property
    def moved(self) -> int:
        return sum(b.moved for b in self.blobs.values())


class NullProgress:
    """Reports nothing (the default of the library functions)."""

    def start(self, digest: str, total: int) -> None:
        pass

    def advance(self, digest: str, n: int) -> None:
        pass

    def done(self, digest: str, status: str) -> None:
        pass


class TerminalProgress(_Tally):
    """Bars redrawn in place on a terminal; one plain line per finished blob otherwise.

    Plain lines keep logs and CI output readable: a carriage-return bar written to a file
    becomes one enormous line.
    """

    def __init__(self, stream: TextIO | None = None, *, verb: str = "") -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.verb = verb  # "pulling" or "pushing", shown in the total line
        self.tty = self.stream.isatty()
        self._drawn = 0  # lines painted last time, to move the cursor back over them
        self._last = 0.0

    def start(self, digest: str, total: int) -> None:
        self._start(digest, total)
        self._draw()

    def advance(self, digest: str, n: int) -> None:
        self._advance(digest, n)
        self._draw()

    def done(self, digest: str, status: str) -> None:
        self._done(digest, status)
        if self.tty:
            self._draw(force=True)
        else:
            blob = self.blobs[digest]
            self.stream.write(f"{short(digest)}: {status} ({human(blob.total)})\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < _MIN_INTERVAL:
            return
        self._last = now
        lines = [self._line(short(d), b.moved, b.total, b.status) for d, b in self.blobs.items()]
        lines.append(self._line(self.verb or "total", self.moved, self.total, ""))
        # Cursor up over the previous drawing, then rewrite each line and clear its tail.
        out = f"\x1b[{self._drawn}F" if self._drawn else ""
        out += "".join(f"{line}\x1b[K\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(lines)

    @staticmethod
    def _line(name: str, moved: int, total: int, status: str) -> str:
        if status:
            return f"{name}: {status}"
        width = 30
        filled = width * moved // total if total else width
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        return f"{name}: [{bar[:width]}] {human(moved)}/{human(total)}"


class WidgetProgress(_Tally):
    """ipywidgets bars for a notebook: one ``IntProgress`` per blob and one for the total.

    The widgets are displayed once and then only their values change, so the saved
    notebook holds one widget view (no ``clear_output``, which nbval could not compare).
    """

    def __init__(self, *, verb: str = "") -> None:
        super().__init__()
        import ipywidgets as widgets  # imported here: the CLI never pays for it

        self._widgets = widgets
        self.verb = verb
        self._rows: dict[str, tuple[object, object]] = {}
        self._total_bar = widgets.IntProgress(min=0, max=1, value=0)
        self._total_label = widgets.HTML(value=verb or "total")
        self._box = widgets.VBox([widgets.HBox([self._total_label, self._total_bar])])
        self._shown = False
        self._last = 0.0

    def start(self, digest: str, total: int) -> None:
        self._start(digest, total)
        w = self._widgets
        bar = w.IntProgress(min=0, max=max(total, 1), value=0)
        label = w.HTML(value=f"<code>{short(digest)}</code>")
        self._rows[digest] = (label, bar)
        self._box.children = (
            *self._box.children[:-1],
            w.HBox([label, bar]),
            self._box.children[-1],
        )
        if not self._shown:
            from IPython.display import display

            # A fixed text/plain: the widget's own repr lists digests and byte counts, which
            # would change the saved notebook on every run (nbval compares text/plain).
            bundle = self._box._repr_mimebundle_()
            bundle["text/plain"] = f"[{self.verb or 'transfer'} progress]"
            display(bundle, raw=True)
            self._shown = True
        self._update(force=True)

    def advance(self, digest: str, n: int) -> None:
        self._advance(digest, n)
        self._update()

    def done(self, digest: str, status: str) -> None:
        self._done(digest, status)
        if digest in self._rows:
            label, _ = self._rows[digest]
            label.value = f"<code>{short(digest)}</code> {status}"
        self._update(force=True)

    def _update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < _MIN_INTERVAL:
            return
        self._last = now
        for digest, (_, bar) in self._rows.items():
            bar.value = min(self.blobs[digest].moved, bar.max)
        self._total_bar.max = max(self.total, 1)
        self._total_bar.value = min(self.moved, self._total_bar.max)
        self._total_label.value = f"{self.verb or 'total'} {human(self.moved)}/{human(self.total)}"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets can be drawn)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def auto(verb: str = "") -> Progress:
    """Widgets in a notebook, bars or lines on stderr elsewhere."""
    return WidgetProgress(verb=verb) if in_notebook() else TerminalProgress(verb=verb)

"""Pictures of the runtime: the container state machine, and a live dashboard of containers.

:func:`state_machine` draws the states a container record goes through (``runtime.state``)
and the verbs that move it, optionally highlighting the state a container is in now.

:class:`Dashboard` is Docker Desktop's container list in a notebook: one row per container
(name, short id, image, state, status text as ``ps`` writes it, uptime) with buttons to stop,
restart, remove it and show its logs. It reads the records through ``runtime.state`` and acts
through ``runtime.lifecycle``, the same calls the CLI makes: no kernel work of its own.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Box colours of :func:`state_machine`.
STATE_COLOR = "#e9ecef"
HIGHLIGHT_COLOR = "#f4a261"

#: Where each state sits (x, y): the box centres of :func:`state_machine`.
STATE_POSITIONS = {
    "created": (0.0, 1.0),
    "running": (3.0, 1.0),
    "paused": (3.0, 2.7),
    "exited": (6.0, 1.0),
    "removed": (6.0, -0.7),
}
#: The transitions: (from, to, verbs), and how each is drawn: arrow start, arrow end, arc
#: curvature, label position. Box half-sizes are 0.8 x 0.35.
EDGES: tuple[tuple[str, str, str], ...] = (
    ("created", "running", "start"),
    ("running", "exited", "stop / kill / exit"),
    ("exited", "running", "start"),
    ("running", "paused", "pause"),
    ("paused", "running", "unpause"),
    ("running", "running", "restart"),
    ("exited", "removed", "rm"),
    ("created", "removed", "rm"),
    ("running", "removed", "rm -f"),
)
_GEOMETRY: dict[tuple[str, str], tuple[tuple, tuple, float, tuple]] = {
    ("created", "running"): ((0.8, 1.0), (2.2, 1.0), 0.0, (1.5, 1.18)),
    ("running", "exited"): ((3.8, 1.12), (5.2, 1.12), 0.0, (4.5, 1.32)),
    ("exited", "running"): ((5.2, 0.88), (3.8, 0.88), 0.0, (4.5, 0.68)),
    ("running", "paused"): ((2.75, 1.4), (2.75, 2.3), 0.0, (2.35, 1.85)),
    ("paused", "running"): ((3.25, 2.3), (3.25, 1.4), 0.0, (3.75, 1.85)),
    ("running", "running"): ((2.5, 0.6), (2.9, 0.6), 2.2, (2.45, 0.05)),
    ("exited", "removed"): ((6.0, 0.6), (6.0, -0.3), 0.0, (6.25, 0.15)),
    ("created", "removed"): ((0.0, 0.6), (5.15, -0.8), 0.25, (2.2, -0.75)),
    ("running", "removed"): ((3.6, 0.6), (5.2, -0.5), 0.0, (4.1, -0.25)),
}


def _state_name(status: str | None) -> str | None:
    """A record's status as a node of the picture ("removing" is on its way to removed)."""
    if status is None:
        return None
    status = {"removing": "removed"}.get(status, status)
    if status not in STATE_POSITIONS:
        raise ValueError(f"unknown state {status!r}: use one of {', '.join(STATE_POSITIONS)}")
    return status


def state_machine(highlight: str | None = None, *, title: str | None = None):
    """The container state machine as a matplotlib figure.

    Each state is a box (its ``gid`` is ``"state:<name>"``), each transition an arrow whose
    label (``gid`` ``"edge:<from>-><to>"``) names the verbs. ``highlight`` colours one state,
    e.g. the current status of a container's record.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    current = _state_name(highlight)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.set_xlim(-1.0, 7.0)
    ax.set_ylim(-1.5, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    w, h = 1.5, 0.6
    for name, (x, y) in STATE_POSITIONS.items():
        on = name == current
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.05",
            facecolor=HIGHLIGHT_COLOR if on else STATE_COLOR,
            edgecolor="#333333",
            linewidth=2.5 if on else 1.0,
            linestyle="--" if name == "removed" else "-",
        )
        box.set_gid(f"state:{name}")
        ax.add_patch(box)
        ax.text(x, y, name, ha="center", va="center", fontsize=11, weight="bold" if on else None)

    def label(src: str, dst: str, text: str, x: float, y: float, **kw: Any) -> None:
        t = ax.text(x, y, text, ha="center", va="center", fontsize=9, color="#1d3557", **kw)
        t.set_gid(f"edge:{src}->{dst}")

    for src, dst, verb in EDGES:
        start, end, rad, (lx, ly) = _GEOMETRY[(src, dst)]
        arrow = FancyArrowPatch(
            start,
            end,
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=14,
            color="#333333",
            lw=1.2,
        )
        arrow.set_gid(f"arrow:{src}->{dst}")
        ax.add_patch(arrow)
        label(src, dst, verb, lx, ly)
    ax.set_title(title or ("container states" + (f" (now: {current})" if current else "")))
    fig.tight_layout()
    plt.close(fig)  # detached: Jupyter's inline backend would otherwise show it twice
    return fig


def edge_labels(fig) -> dict[tuple[str, str], str]:
    """The transitions drawn in a :func:`state_machine` figure: ``{(from, to): verbs}``."""
    out = {}
    for t in fig.axes[0].texts:
        gid = t.get_gid() or ""
        if gid.startswith("edge:"):
            src, dst = gid[5:].split("->")
            out[(src, dst)] = t.get_text()
    return out


def highlighted(fig) -> list[str]:
    """The states a :func:`state_machine` figure highlights."""
    from matplotlib.colors import to_hex

    return [
        p.get_gid()[6:]
        for p in fig.axes[0].patches
        if (p.get_gid() or "").startswith("state:") and to_hex(p.get_facecolor()) == HIGHLIGHT_COLOR
    ]


# --- the dashboard ---------------------------------------------------------------------------
COLUMNS = ("name", "id", "image", "state", "status", "uptime")
_WIDTHS = {"name": "130px", "id": "110px", "image": "90px", "state": "70px"}
_WIDTHS |= {"status": "200px", "uptime": "70px"}
_STATE_COLORS = {"running": "#2a9d8f", "paused": "#e9c46a", "exited": "#6c757d"}


def uptime(rec) -> str:
    """How long a running container has been up, as ``H:MM:SS`` ("" when not running)."""
    if not rec.running:
        return ""
    from containerlab.runtime.status import seconds_since

    s = int(seconds_since(rec.state.started_at))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def row_values(rec) -> dict[str, str]:
    """One dashboard row as text: the columns of :data:`COLUMNS`."""
    from containerlab.runtime.status import status_text  # the wording `ps` uses

    return {
        "name": rec.name,
        "id": rec.short_id,
        "image": str(rec.config.get("image", "")),
        "state": rec.state.status,
        "status": status_text(rec),
        "uptime": uptime(rec),
    }


@dataclass
class Row:
    """The widgets of one container's row."""

    cid: str
    cells: dict[str, Any]  # column -> HTML widget
    stop: Any
    restart: Any
    remove: Any
    logs: Any
    box: Any


class Dashboard:
    """Docker Desktop's container list as ipywidgets, for the containers of the state root.

    ``refresh_every`` (seconds) starts a thread that refreshes the values while the
    dashboard lives; ``None`` refreshes only on the Refresh button or :meth:`refresh`.
    ``stop_timeout`` is the grace period of the Stop and Restart buttons (as ``stop -t``).
    :meth:`close` stops the thread and closes the widgets. Display it as a cell's value.
    """

    def __init__(
        self,
        *,
        refresh_every: float | None = 1.0,
        stop_timeout: float = 10.0,
        log_lines: int = 20,
        all_states: bool = True,
    ):
        import ipywidgets as w

        self._w = w
        self.stop_timeout = stop_timeout
        self.log_lines = log_lines
        self.all_states = all_states
        self.rows: dict[str, Row] = {}
        self.values: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.header = w.HBox(
            [self._cell(f"<b>{c.upper()}</b>", c) for c in COLUMNS] + [w.HTML("<b>ACTIONS</b>")]
        )
        self.table = w.VBox([self.header])
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.message = w.HTML("")
        self.log_title = w.HTML("")
        self.log_view = w.HTML("")
        self.widget = w.VBox(
            [
                w.HBox([self.refresh_button, self.message]),
                self.table,
                self.log_title,
                self.log_view,
            ]
        )
        self.refresh()
        if refresh_every:
            self._thread = threading.Thread(
                target=self._tick, args=(float(refresh_every),), name="clab-dashboard", daemon=True
            )
            self._thread.start()

    # --- building -------------------------------------------------------------------------
    def _cell(self, value: str, column: str):
        return self._w.HTML(value, layout=self._w.Layout(width=_WIDTHS[column]))

    def _button(self, text: str, tip: str, action: Callable[[str], Any], cid: str):
        b = self._w.Button(description=text, tooltip=tip, layout=self._w.Layout(width="70px"))
        b.on_click(lambda _b: self._act(text.lower(), action, cid))
        return b

    def _new_row(self, cid: str) -> Row:
        cells = {c: self._cell("", c) for c in COLUMNS}
        stop = self._button("Stop", "stop: SIGTERM, then SIGKILL", self._do_stop, cid)
        restart = self._button("Restart", "stop, then start", self._do_restart, cid)
        remove = self._button("Remove", "rm -f", self._do_remove, cid)
        logs = self._button("Logs", "show its last log lines", self.show_logs, cid)
        box = self._w.HBox([*cells.values(), stop, restart, remove, logs])
        return Row(cid, cells, stop, restart, remove, logs, box)

    @staticmethod
    def _render(column: str, value: str) -> str:
        text = html.escape(value)
        if column == "state":
            return f'<span style="color:{_STATE_COLORS.get(value, "#1d3557")}">{text}</span>'
        if column in ("id", "uptime"):
            return f"<code>{text}</code>"
        return text

    # --- reading --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read every record again; add, update and drop rows."""
        from containerlab.runtime import state

        with self._lock:
            if self._closed:
                return
            records = state.list_records(all_states=self.all_states)
            seen = []
            for rec in records:
                row = self.rows.get(rec.id) or self._new_row(rec.id)
                self.rows[rec.id] = row
                values = row_values(rec)
                for column, value in values.items():
                    rendered = self._render(column, value)
                    if row.cells[column].value != rendered:
                        row.cells[column].value = rendered
                row.stop.disabled = not rec.running
                row.restart.disabled = rec.state.status == "created"
                self.values[rec.id] = values
                seen.append(rec.id)
            for cid in set(self.rows) - set(seen):
                self._drop(cid)
            children = (self.header, *(self.rows[c].box for c in seen))
            if tuple(self.table.children) != children:
                self.table.children = children

    def _drop(self, cid: str) -> None:
        row = self.rows.pop(cid)
        self.values.pop(cid, None)
        row.box.close()
        for widget in (*row.cells.values(), row.stop, row.restart, row.remove, row.logs):
            widget.close()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception as e:  # a record removed mid-read: say so, try again later
                self.message.value = f"<i>refresh failed: {html.escape(str(e))}</i>"

    def table_text(self) -> str:
        """The rows as a plain-text table (what the widgets show)."""
        with self._lock:
            rows = [[c.upper() for c in COLUMNS]]
            rows += [[v[c] for c in COLUMNS] for v in self.values_in_order()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        return "\n".join(
            "  ".join(v.ljust(n) for v, n in zip(r, widths, strict=True)).rstrip() for r in rows
        )

    def values_in_order(self) -> list[dict[str, str]]:
        """The rows' values, top row first."""
        with self._lock:
            by_box = {row.box: cid for cid, row in self.rows.items()}
            return [self.values[by_box[b]] for b in self.table.children[1:] if b in by_box]

    def row(self, name_or_id: str) -> Row:
        """The row of a container, by name or (a prefix of its) id."""
        with self._lock:
            for cid, values in self.values.items():
                if name_or_id in (values["name"], cid) or cid.startswith(name_or_id):
                    return self.rows[cid]
        raise KeyError(f"no row for container {name_or_id!r} in the dashboard")

    # --- acting ---------------------------------------------------------------------------
    def _act(self, verb: str, action: Callable[[str], Any], cid: str) -> None:
        from containerlab.errors import ContainerlabError

        name = self.values.get(cid, {}).get("name", cid[:12])
        try:
            action(cid)
            self.message.value = f"{verb}: {html.escape(name)}"
        except ContainerlabError as e:
            self.message.value = f'<span style="color:#c1121f">{html.escape(str(e))}</span>'
        self.refresh()

    def _do_stop(self, cid: str) -> None:
        from containerlab.runtime import lifecycle

        lifecycle.stop(cid, self.stop_timeout)

    def _do_restart(self, cid: str) -> None:
        from containerlab.runtime import lifecycle

        lifecycle.restart(cid, self.stop_timeout)

    def _do_remove(self, cid: str) -> None:
        from containerlab.runtime import lifecycle

        lifecycle.remove(cid, force=True)
        if self.log_title.value and cid[:12] in self.log_title.value:
            self.log_title.value = self.log_view.value = ""

    def show_logs(self, cid: str) -> str:
        """Show a container's last log lines under the table; returns them."""
        from containerlab.runtime import lifecycle

        entries = list(lifecycle.log_entries(cid, tail=self.log_lines))
        text = "".join(e.get("log", "") for e in entries)
        name = self.values.get(cid, {}).get("name", "")
        self.log_title.value = (
            f"<b>logs of {html.escape(name)}</b> <code>{cid[:12]}</code> "
            f"(last {self.log_lines} lines)"
        )
        shown = html.escape(text) or "(no output)"
        self.log_view.value = f'<pre style="background:#f8f9fa;padding:4px">{shown}</pre>'
        return text

    # --- showing and closing ---------------------------------------------------------------
    @property
    def refreshing(self) -> bool:
        """Whether the refresh thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the refresh thread and close every widget."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True
            for cid in list(self.rows):
                self._drop(cid)
            for widget in (
                self.header,
                *self.header.children,
                self.table,
                self.refresh_button,
                self.message,
                self.log_title,
                self.log_view,
                self.widget,
            ):
                widget.close()

    def __repr__(self) -> str:
        n = len(self.rows)
        mode = "auto-refresh" if self.refreshing else "manual refresh"
        return f"<containerlab Dashboard: {n} container{'s' * (n != 1)}, {mode}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):
            data = data[0]
        return {**(data or {}), "text/plain": repr(self)}

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__: Sequence[str] = (
    "Dashboard",
    "edge_labels",
    "highlighted",
    "row_values",
    "state_machine",
    "uptime",
)

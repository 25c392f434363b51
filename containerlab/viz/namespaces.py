"""Pictures of namespaces: which ones processes share, and how PID namespaces nest.

Everything here draws what it is given, or reads it from ``/proc`` (``/proc/PID/ns/*``,
``/proc/PID/status``): it creates, joins or changes nothing. Each function returns a
matplotlib ``Figure``; show it with ``plt.show()`` or as a cell's value.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from containerlab import namespaces

#: Cell colours of :func:`namespace_grid`, by what a namespace is compared to the reference.
COLORS = {
    "shared": "#d9d9d9",  # the reference process's namespace (usually the host's)
    "new": "#f4a261",  # a namespace the reference is not in
    "missing": "#ffffff",  # this kernel has no namespace of that kind
}
#: Colours of the nested boxes of :func:`pid_namespace_picture`, outermost first.
LEVEL_COLORS = ("#e9ecef", "#f4a261", "#e76f51", "#2a9d8f")

# ioctl(NS_GET_PARENT) on a PID namespace file gives its parent (linux/nsfs.h: _IO(0xb7, 0x2)).
_NS_GET_PARENT = 0xB702

Processes = Mapping[int, str] | Sequence[int]


def short_label(ino: int) -> str:
    """A namespace's inode number, shortened for a cell: ``4026532301`` -> ``…32301``.

    Namespace inodes are handed out close together, so the last digits tell them apart.
    """
    text = str(ino)
    return text if len(text) <= 5 else "…" + text[-5:]


def _labelled(processes: Processes) -> dict[int, str]:
    if isinstance(processes, Mapping):
        return {int(pid): str(label) for pid, label in processes.items()}
    return {int(pid): f"pid {pid}" for pid in processes}


def namespace_grid(
    processes: Processes,
    ids: Mapping[int, Mapping[str, int]] | None = None,
    *,
    reference: int | str = "self",
    reference_label: str | None = None,
    title: str | None = None,
) -> Figure:
    """A table: one row per process, one column per namespace kind (``namespaces.KINDS``).

    A cell is grey when the process shares that namespace with ``reference`` (by default the
    calling process, e.g. the notebook kernel) and orange when it is in a new one; the text
    is the namespace's short inode number, so two rows in the same new namespace show the
    same number. ``processes`` is ``{pid: label}`` or a list of pids; ``ids`` gives
    ``{pid: ns_ids(pid)}`` already read (otherwise they are read from /proc now), and may
    also hold the reference's.
    """
    rows = _labelled(processes)
    if not rows:
        raise ValueError("namespace_grid needs at least one process")
    ids = dict(ids or {})
    table = {pid: ids.get(pid) or namespaces.ns_ids(pid) for pid in rows}
    ref_ids = ids.get(reference) if reference in ids else namespaces.ns_ids(reference)  # type: ignore[call-overload]
    kinds = list(namespaces.KINDS)

    fig, ax = plt.subplots(figsize=(1.1 * len(kinds) + 2.2, 0.55 * len(rows) + 1.6))
    for r, pid in enumerate(rows):
        y = len(rows) - 1 - r
        for c, kind in enumerate(kinds):
            ino = table[pid].get(kind)
            if ino is None:
                state, text = "missing", "-"
            elif ino == ref_ids.get(kind):
                state, text = "shared", short_label(ino)
            else:
                state, text = "new", short_label(ino)
            cell = Rectangle((c, y), 1, 1, facecolor=COLORS[state], edgecolor="white", linewidth=2)
            cell.set_gid(f"{pid}:{kind}:{state}")
            ax.add_patch(cell)
            ax.text(c + 0.5, y + 0.5, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, len(kinds))
    ax.set_ylim(0, len(rows))
    ax.set_xticks([c + 0.5 for c in range(len(kinds))], kinds)
    ax.xaxis.tick_top()
    ax.set_yticks(
        [len(rows) - 1 - r + 0.5 for r in range(len(rows))],
        [f"{label} ({pid})" for pid, label in rows.items()],
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ref_name = reference_label or ("this process" if reference == "self" else f"pid {reference}")
    ax.legend(
        handles=[
            Patch(facecolor=COLORS["shared"], label=f"shared with {ref_name}"),
            Patch(facecolor=COLORS["new"], label="new namespace"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=2,
        frameon=False,
    )
    ax.set_title(title or "namespaces by process (cell: inode number)", pad=24)
    fig.tight_layout()
    return fig


def nspid(pid: int) -> list[int]:
    """The pid of a process in each PID namespace it is visible in, outermost first.

    It is the ``NSpid`` line of ``/proc/PID/status``: ``NSpid: 4362 1`` is pid 4362 on the
    host and PID 1 in the container's PID namespace.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except FileNotFoundError:
        raise namespaces.NamespaceError(f"no process {pid}; is it still running?") from None
    return [int(pid)]


def pid_namespace_chain(pid: int) -> list[int]:
    """Inode numbers of the PID namespaces a process is in, outermost (ours) first."""
    chain = []
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            chain.append(os.fstat(fd).st_ino)
            try:
                parent = fcntl.ioctl(fd, _NS_GET_PARENT)
            except OSError:  # EPERM: the parent is above our own PID namespace
                break
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)
    chain.reverse()
    return chain


def pid_namespace_picture(processes: Processes, *, title: str | None = None) -> Figure:
    """Nested boxes, one per PID namespace, with each process as seen from every level.

    A process in a new PID namespace has one pid per level (``NSpid``): the host's, then
    the one inside. Each process is drawn in its innermost box, labelled ``host 4362 ->
    inside 1``. ``processes`` is ``{pid: label}`` or a list of pids.
    """
    rows = _labelled(processes)
    if not rows:
        raise ValueError("pid_namespace_picture needs at least one process")
    info = []
    for pid, label in rows.items():
        chain = pid_namespace_chain(pid)
        pids = nspid(pid)
        # NSpid starts at the process's outermost visible level, as does the chain.
        info.append((tuple(chain), pid, label, pids[-len(chain) :] if chain else pids))
    # Processes of one namespace next to each other, outer namespaces first.
    info.sort(key=lambda t: (t[0], t[1]))
    n = len(info)
    depth = max(len(t[0]) for t in info)

    fig, ax = plt.subplots(figsize=(max(6.0, 2.3 * n + 1), 0.8 * depth + 1.6))
    # One box per namespace, spanning the columns of the processes inside it.
    boxes: dict[tuple[int, ...], list[int]] = {}
    for col, (chain, *_rest) in enumerate(info):
        for level in range(1, len(chain) + 1):
            boxes.setdefault(chain[:level], []).append(col)
    margin = 0.12
    for prefix, cols in boxes.items():
        level = len(prefix) - 1
        inset = margin * level
        x0, x1 = min(cols) + inset, max(cols) + 1 - inset
        y0, y1 = inset, depth + 1 - inset
        box = Rectangle(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            facecolor=LEVEL_COLORS[level % len(LEVEL_COLORS)],
            edgecolor="#495057",
            linewidth=1.2,
            alpha=0.9 if level else 1.0,
        )
        box.set_gid(f"pidns:{prefix[-1]}:level{level}")
        ax.add_patch(box)
        name = (
            "PID namespace of this process" if level == 0 else f"new PID namespace (level {level})"
        )
        ax.text(
            x0 + 0.05,
            y1 - 0.08,
            f"{name}\ninode {short_label(prefix[-1])}",
            ha="left",
            va="top",
            fontsize=7,
        )
    for col, (chain, pid, label, pids) in enumerate(info):
        inside = pids[-1]
        seen = f"pid {pids[0]}" if len(pids) == 1 else f"host {pids[0]} -> inside {inside}"
        ax.text(
            col + 0.5,
            0.35 + 0.5 * (len(chain) - 1),
            f"{label}\n{seen}",
            ha="center",
            va="bottom",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#495057"},
            gid=f"process:{pid}",
        )
    ax.set_xlim(-0.05, n + 0.05)
    ax.set_ylim(-0.05, depth + 1.05)
    ax.set_axis_off()
    ax.set_title(title or "PID namespaces: one pid per level", fontsize=10)
    fig.tight_layout()
    return fig


def describe(processes: Processes, *, reference: int | str = "self") -> str:
    """The grid of :func:`namespace_grid` as text: ``new``/``shared`` per kind and process.

    Stable from run to run (no pids or inode numbers), so a notebook can print it.
    """
    rows = _labelled(processes)
    ref = namespaces.ns_ids(reference)
    width = max(len(label) for label in rows.values())
    lines = [" " * width + "  " + " ".join(f"{k:>6}" for k in namespaces.KINDS)]
    for pid, label in rows.items():
        mine = namespaces.ns_ids(pid)
        cells = ["shared" if mine.get(k) == ref.get(k) else "new" for k in namespaces.KINDS]
        lines.append(f"{label:<{width}}  " + " ".join(f"{c:>6}" for c in cells))
    return "\n".join(lines)

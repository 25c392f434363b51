"""Pictures of mount tables: the host's next to a container's, and one table as a tree.

A mount table (``/proc/PID/mountinfo``, read with ``rootfs.mountinfo(pid)``) is a tree:
every mount sits on a directory of its parent mount (``parent_id``). Everything here draws
the ``rootfs.Mount`` records it is given and reads nothing else: no kernel work.

- :func:`mount_tree` is a text view, like ``findmnt``: stable enough to compare in a test
  or a notebook (no mount ids), and it marks what makes a container's table special
  (read-only mounts, runc's masked and read-only paths, propagation, covered mounts).
- :func:`compare` says which mount points exist in one table only.
- :func:`before_after` draws both tables side by side as a matplotlib ``Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from containerlab.rootfs import MASKED_PATHS, READONLY_PATHS, Mount

#: Row colours of :func:`before_after`, by what a mount is.
COLORS = {
    "masked": "#e76f51",  # one of runc's masked paths: hidden behind an empty mount
    "readonly-path": "#f4a261",  # one of runc's read-only paths: readable, not writable
    "read-only": "#a8dadc",  # any other mount mounted ro (e.g. /sys in a container)
    "only-here": "#95d5b2",  # the mount point exists in this table only
    "plain": "#f1f3f5",  # nothing special
}

# Fixed minimum column widths: a row that exists on one kernel only (a masked path such as
# /sys/devices/virtual/powercap) must not change the width of every other row.
_MIN_WIDTH = {"mountpoint": 36, "fstype": 8, "options": 32, "propagation": 11}


def is_readonly(m: Mount) -> bool:
    """Whether the mount itself is read-only (the per-mount ``ro`` option)."""
    return "ro" in m.options.split(",")


def notes(m: Mount, mounts: Sequence[Mount] = ()) -> tuple[str, ...]:
    """Short words saying what is special about a mount.

    ``read-only``, ``masked`` (one of ``rootfs.MASKED_PATHS``), ``read-only path`` (one of
    ``rootfs.READONLY_PATHS``), and ``covered`` when another mount of ``mounts`` sits on the
    same mount point on top of it (the one below is then invisible).
    """
    out = []
    if is_readonly(m):
        out.append("read-only")
    if m.mountpoint in MASKED_PATHS:
        out.append("masked")
    if m.mountpoint in READONLY_PATHS:
        out.append("read-only path")
    if any(o.parent_id == m.mount_id and o.mountpoint == m.mountpoint for o in mounts):
        out.append("covered")
    return tuple(out)


def _roots_and_children(mounts: Sequence[Mount]) -> tuple[list[Mount], dict[int, list[Mount]]]:
    ids = {m.mount_id for m in mounts}
    order = {m.mount_id: i for i, m in enumerate(mounts)}
    children: dict[int, list[Mount]] = {}
    roots = []
    for m in mounts:
        # A root's parent is outside this namespace's table (or itself, for the first mount).
        if m.parent_id not in ids or m.parent_id == m.mount_id:
            roots.append(m)
        else:
            children.setdefault(m.parent_id, []).append(m)
    # Siblings by path, then in mount order (two mounts on one path: the lower one first).
    for kids in children.values():
        kids.sort(key=lambda k: (k.mountpoint, order[k.mount_id]))
    roots.sort(key=lambda k: (k.mountpoint, order[k.mount_id]))
    return roots, children


@dataclass(frozen=True)
class TreeRow:
    """One mount placed in the tree: how deep it is and the branch drawn before it."""

    mount: Mount
    depth: int  # 0 for the root mount
    branch: str  # the tree-drawing prefix, e.g. "│  ├─ "


def tree_rows(mounts: Sequence[Mount]) -> list[TreeRow]:
    """The mounts in tree order (each after its parent), with ``findmnt``-style branches."""
    roots, children = _roots_and_children(mounts)
    rows: list[TreeRow] = []
    seen: set[int] = set()

    def walk(m: Mount, depth: int, lead: str, last: bool) -> None:
        if m.mount_id in seen:  # a malformed table must not loop forever
            return
        seen.add(m.mount_id)
        branch = "" if depth == 0 else lead + ("└─ " if last else "├─ ")
        rows.append(TreeRow(m, depth, branch))
        kids = children.get(m.mount_id, [])
        below = "" if depth == 0 else lead + ("   " if last else "│  ")
        for i, kid in enumerate(kids):
            walk(kid, depth + 1, below, i == len(kids) - 1)

    for root in roots:
        walk(root, 0, "", True)
    return rows


class MountTree:
    """A mount table as text, one mount per line, indented under its parent.

    Shown as a cell's value (or with ``print``). Mount ids are left out on purpose: they
    change on every run, the shape of the tree does not.
    """

    def __init__(self, mounts: Sequence[Mount], title: str | None = None):
        self.mounts = list(mounts)
        self.title = title
        self.rows = tree_rows(self.mounts)
        self.text = self._render()

    def _render(self) -> str:
        cells = [
            (
                r.branch + r.mount.mountpoint,
                r.mount.fstype,
                r.mount.options,
                r.mount.propagation,
                ", ".join(notes(r.mount, self.mounts)),
            )
            for r in self.rows
        ]
        header = ("MOUNT POINT", "TYPE", "OPTIONS", "PROPAGATION", "NOTES")
        widths = [
            max(_MIN_WIDTH[key], *(len(c[i]) for c in cells)) for i, key in enumerate(_MIN_WIDTH)
        ]

        def line(c: tuple[str, ...]) -> str:
            padded = [v.ljust(w) for v, w in zip(c[:4], widths, strict=True)]
            return "  ".join([*padded, c[4]]).rstrip()

        out = [self.title] if self.title else []
        out += [line(header), *(line(c) for c in cells)]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython's text/plain
        p.text(self.text)


def mount_tree(mounts: Sequence[Mount], title: str | None = None) -> MountTree:
    """The mount table as a ``findmnt``-like tree (see :class:`MountTree`)."""
    return MountTree(mounts, title)


@dataclass(frozen=True)
class MountDiff:
    """Which mount points two tables have (compared by path: the mounts themselves differ)."""

    only_before: tuple[str, ...]  # e.g. the host's disks and cgroup mounts: gone in a container
    only_after: tuple[str, ...]  # e.g. the container's masked paths
    both: tuple[str, ...]  # the same path in both, usually a different filesystem (/ , /proc)
    changed_type: tuple[str, ...]  # paths of ``both`` whose filesystem type differs


def compare(before: Sequence[Mount], after: Sequence[Mount]) -> MountDiff:
    """Compare two mount tables (say the host's and a container's) by mount point."""
    b = {m.mountpoint: m for m in before}
    a = {m.mountpoint: m for m in after}
    both = sorted(set(a) & set(b))
    return MountDiff(
        only_before=tuple(sorted(set(b) - set(a))),
        only_after=tuple(sorted(set(a) - set(b))),
        both=tuple(both),
        changed_type=tuple(p for p in both if a[p].fstype != b[p].fstype),
    )


def _category(m: Mount, other_paths: set[str]) -> str:
    if m.mountpoint in MASKED_PATHS:
        return "masked"
    if m.mountpoint in READONLY_PATHS:
        return "readonly-path"
    if is_readonly(m):
        return "read-only"
    if m.mountpoint not in other_paths:
        return "only-here"
    return "plain"


def _draw_table(ax, mounts: Sequence[Mount], other: Sequence[Mount], title: str, rows: int):
    other_paths = {m.mountpoint for m in other}
    tree = tree_rows(mounts)
    shown = tree[:rows]
    ax.set_xlim(0, 1)
    ax.set_ylim(-rows - 0.5, 1.2)
    ax.axis("off")
    ax.set_title(f"{title}: {len(mounts)} mounts", loc="left", fontsize=11, fontweight="bold")
    for i, r in enumerate(shown):
        m = r.mount
        y = -i
        cat = _category(m, other_paths)
        ax.add_patch(Rectangle((0, y - 0.45), 1, 0.9, color=COLORS[cat], lw=0))
        ax.text(
            0.01 + 0.03 * r.depth,
            y,
            m.mountpoint,
            va="center",
            fontsize=8,
            family="monospace",
        )
        tags = [m.fstype]
        if m.propagation != "private":
            tags.append(m.propagation)
        if "covered" in notes(m, mounts):
            tags.append("covered")
        ax.text(0.99, y, "  ".join(tags), va="center", ha="right", fontsize=7, color="#343a40")
    if len(tree) > rows:
        ax.text(0.01, -rows, f"… and {len(tree) - rows} more", va="center", fontsize=8)


def before_after(
    before: Sequence[Mount],
    after: Sequence[Mount],
    *,
    before_label: str = "host",
    after_label: str = "container",
    max_rows: int = 40,
) -> Figure:
    """Two mount tables side by side, each as a tree, rows coloured by what they are.

    Colours (:data:`COLORS`): masked paths, read-only paths, other read-only mounts, and
    mount points that exist in that table only; the right-hand tag is the filesystem type,
    plus the propagation when it is not private (``shared:N`` on a systemd host). The
    figure is detached from pyplot: show it as a cell's value; nothing needs closing.
    """
    rows = max(1, min(max_rows, max(len(before), len(after))))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.24 * rows + 1.6))
    _draw_table(left, before, after, before_label, rows)
    _draw_table(right, after, before, after_label, rows)
    legend = [
        Patch(color=COLORS["only-here"], label="only in this table"),
        Patch(color=COLORS["read-only"], label="read-only mount"),
        Patch(color=COLORS["readonly-path"], label="read-only path (runc)"),
        Patch(color=COLORS["masked"], label="masked path (runc)"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    # Detach from pyplot: Jupyter's inline backend would otherwise show it a second time.
    plt.close(fig)
    return fig

"""Where containerlab keeps its state.

``CONTAINERLAB_ROOT`` (default ``/var/lib/containerlab``) holds what survives a reboot
(images, root filesystems). Runtime state lives under ``/run/containerlab``, a tmpfs that a
reboot empties, as Docker keeps its under ``/run/docker``. When ``CONTAINERLAB_ROOT`` is set
(each test sets its own), runtime state goes to ``$CONTAINERLAB_ROOT/run`` so that two roots
never share anything; ``CONTAINERLAB_RUN`` overrides that.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "/var/lib/containerlab"
DEFAULT_RUN = "/run/containerlab"


def state_root() -> Path:
    """The persistent state directory (images, root filesystems)."""
    return Path(os.environ.get("CONTAINERLAB_ROOT") or DEFAULT_ROOT)


def run_root() -> Path:
    """The runtime state directory (one subdirectory per live container)."""
    if os.environ.get("CONTAINERLAB_RUN"):
        return Path(os.environ["CONTAINERLAB_RUN"])
    if os.environ.get("CONTAINERLAB_ROOT"):
        return Path(os.environ["CONTAINERLAB_ROOT"]) / "run"
    return Path(DEFAULT_RUN)

"""How ``ps`` words a container's status: ``Up 3 seconds``, ``Exited (0) 2 minutes ago``.

Shared by the CLI and the notebook dashboard, so both say the same thing the same way.
"""

from __future__ import annotations

import time
from datetime import datetime


def seconds_since(stamp: str) -> float:
    if not stamp:
        return 0.0
    t = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")
    return max(0.0, time.time() - t.timestamp())


def human_duration(seconds: float) -> str:
    """Docker's wording: ``Less than a second``, ``3 seconds``, ``2 minutes``, ``5 hours``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if s >= n:
            v = s // n
            return (
                "About a minute"
                if unit == "minute" and v == 1
                else (f"{v} {unit}{'s' if v > 1 else ''}")
            )
    return f"{s} seconds"


def status_text(rec) -> str:
    st = rec.state
    if st.status == "running":
        return f"Up {human_duration(seconds_since(st.started_at))}"
    if st.status == "paused":
        return f"Up {human_duration(seconds_since(st.started_at))} (Paused)"
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {human_duration(seconds_since(st.finished_at))} ago"
    return st.status.capitalize()

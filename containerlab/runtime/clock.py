"""Time as Docker writes it: one function, in a module of its own so that the supervisor's
idle loop can stamp log lines without importing the state store."""

from __future__ import annotations

import time


def now() -> str:
    """The current time as Docker writes it (RFC 3339 with nanoseconds, UTC)."""
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"

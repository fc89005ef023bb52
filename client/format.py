"""Human-readable figures both clients show (the CLI and the UI): sizes, ages, durations, percentages."""

from __future__ import annotations

import time


def human_bytes(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """Seconds as '45 s', '3 min 5 s', '2 h 10 min'; '' when unknown."""
    if seconds is None or seconds < 0:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def age(created: float, now: float | None = None) -> str:
    """How long ago: 'just now', '5 min ago', '3 h ago', '2 d ago'."""
    delta = max(0.0, (time.time() if now is None else now) - created)
    if delta < 10:
        return "just now"
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def percent(fraction: float | None) -> str:
    return f"{round(100 * (fraction or 0.0))} %"

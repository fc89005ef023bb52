"""The UI's status colours (sizes, ages and durations: client/format.py, shared with the CLI)."""

from __future__ import annotations

#: Quasar colour of each job/node status pill.
STATUS_COLORS = {
    "queued": "grey-7",
    "pending": "grey-6",
    "running": "primary",
    "completed": "positive",
    "failed": "negative",
    "canceled": "orange-9",
    "skipped": "grey-5",
}


def status_color(status: str | None) -> str:
    return STATUS_COLORS.get(status or "", "grey-7")

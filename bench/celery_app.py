"""The Celery side of the no-op benchmark: a chain of three no-op tasks on the same Redis (bench-only)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.timing import in_flight_then_one_at_a_time

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/1"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/2"),
)
# Celery's fast path: no prefetch starvation, JSON, no result extension, acks early (its default).
app.conf.update(
    worker_prefetch_multiplier=4,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(_: object = None) -> int:
    return 1


def measure(jobs: int, latency_jobs: int) -> dict[str, float]:
    """Throughput with `jobs` chains in flight, then latency one chain at a time."""
    import time

    from celery import chain

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=1):
        if time.monotonic() > deadline:
            raise TimeoutError("no Celery worker answered")

    def start() -> Any:
        result = chain(noop.s(), noop.s(), noop.s()).apply_async()
        return lambda: result.get(timeout=300)

    return in_flight_then_one_at_a_time(start, jobs, latency_jobs)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))

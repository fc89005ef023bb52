"""The Celery side of the no-op benchmark: a chain of three no-op tasks on the same Redis (bench-only)."""

from __future__ import annotations

import os

from celery import Celery

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
    import statistics
    import time

    from celery import chain

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=1):
        if time.monotonic() > deadline:
            raise TimeoutError("no Celery worker answered")
    started = time.perf_counter()
    results = [chain(noop.s(), noop.s(), noop.s()).apply_async() for _ in range(jobs)]
    for r in results:
        r.get(timeout=300)
    throughput = jobs / (time.perf_counter() - started)
    latencies = []
    for _ in range(latency_jobs):
        t0 = time.perf_counter()
        chain(noop.s(), noop.s(), noop.s()).apply_async().get(timeout=60)
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return {
        "jobs_s": throughput,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))

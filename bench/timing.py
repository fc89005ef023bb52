"""Throughput with many jobs in flight, then latency one job at a time: the measurement every engine gets."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

#: start() submits one job and returns wait(), which blocks until that job's result is in.
Start = Callable[[], Callable[[], Any]]


def in_flight_then_one_at_a_time(start: Start, jobs: int, latency_jobs: int) -> dict[str, float]:
    started = time.perf_counter()
    waits = [start() for _ in range(jobs)]
    for wait in waits:
        wait()
    throughput = jobs / (time.perf_counter() - started)
    latencies = []
    for _ in range(latency_jobs):
        t0 = time.perf_counter()
        start()()
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return {
        "jobs_s": throughput,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }

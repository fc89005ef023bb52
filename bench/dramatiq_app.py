"""The Dramatiq side of the no-op benchmark: a pipeline of three no-op actors over its Redis broker, with the
results middleware so the client can wait on the last one (bench-only)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

broker = RedisBroker(url=os.environ.get("BENCH_DRAMATIQ_BROKER", "redis://127.0.0.1:6379/3"))
broker.add_middleware(
    Results(backend=RedisBackend(url=os.environ.get("BENCH_DRAMATIQ_BACKEND", "redis://127.0.0.1:6379/4")))
)
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop(_: object = None) -> int:
    return 1


def _pipeline() -> dramatiq.pipeline:
    return dramatiq.pipeline([noop.message(), noop.message(), noop.message()])


def measure(jobs: int, latency_jobs: int) -> dict[str, float]:
    """Throughput with `jobs` pipelines in flight, then latency one pipeline at a time."""
    import statistics
    import time

    _pipeline().run().get_result(block=True, timeout=60_000)  # a worker is up and warm
    started = time.perf_counter()
    pipes = [_pipeline().run() for _ in range(jobs)]
    for p in pipes:
        p.get_result(block=True, timeout=300_000)
    throughput = jobs / (time.perf_counter() - started)
    latencies = []
    for _ in range(latency_jobs):
        t0 = time.perf_counter()
        _pipeline().run().get_result(block=True, timeout=60_000)
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

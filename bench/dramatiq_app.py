"""The Dramatiq side of the no-op benchmark: a pipeline of three no-op actors over its Redis broker, with the
results middleware so the client can wait on the last one (bench-only)."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from bench.timing import in_flight_then_one_at_a_time

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
    _pipeline().run().get_result(block=True, timeout=60_000)  # a worker is up and warm

    def start() -> Any:
        pipe = _pipeline().run()
        return lambda: pipe.get_result(block=True, timeout=300_000)

    return in_flight_then_one_at_a_time(start, jobs, latency_jobs)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))

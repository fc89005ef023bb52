"""Hybrid no-op job (control -> data -> control) vs a Celery chain of three no-op tasks, same Redis.

Targets: throughput >= 2x Celery's best configuration; p50 latency <= 1/2 of Celery's.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import redis

from bench.stack import ROOT, Stack, stack
from common.bridge import Bridge, connect
from common.events import EventLog
from common.executor import submit
from common.jobs import JobStore
from common.keys import Keys
from common.models.graph_schema import GraphDocument
from common.settings import Settings

JOBS, LATENCY_JOBS = 500, 150
GRAPH = GraphDocument.model_validate(
    {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "noop",
        "nodes": [
            {"id": "c1", "service": "bench.control", "plane": "control"},
            {"id": "d", "service": "bench.data", "plane": "data"},
            {"id": "c2", "service": "bench.control", "plane": "control"},
        ],
        "edges": [{"from": "c1", "to": "d"}, {"from": "d", "to": "c2"}],
    }
)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def redis_calls(url: str) -> int:
    """Commands the Redis server has run so far (every client; scripts count once, as EVALSHA)."""
    client = redis.Redis.from_url(url)
    try:
        return sum(int(v["calls"]) for k, v in client.info("commandstats").items() if k.startswith("cmdstat_"))
    finally:
        client.close()


async def biplane_run(st: Stack) -> dict[str, float]:
    s = Settings(redis_url=st.env["BIPLANE_REDIS_URL"])
    redis = connect(s)
    keys = Keys(s.key_prefix)
    events = EventLog(redis, keys, s.event_maxlen)
    store, bridge = JobStore(redis, keys, events, s.job_ttl_seconds), Bridge(redis, keys, s)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.events_channel())
    done: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[float]] = {}

    async def listen() -> None:
        async for msg in pubsub.listen():
            if msg["type"] != "message":
                continue
            ev = json.loads(msg["data"])
            if ev.get("kind") == "status" and ev.get("status") == "completed":
                done[ev["jobId"]] = time.perf_counter()
                fut = waiting.pop(ev["jobId"], None)
                if fut is not None and not fut.done():
                    fut.set_result(done[ev["jobId"]])

    listener = asyncio.create_task(listen())
    calls_before = redis_calls(st.env["BIPLANE_REDIS_URL"])
    started = time.perf_counter()
    ids = []
    for _ in range(JOBS):
        job = await store.create(GRAPH)
        await submit(bridge, job)
        ids.append(job.job_id)
    while len([i for i in ids if i in done]) < JOBS:
        await asyncio.sleep(0.01)
    throughput = JOBS / (max(done[i] for i in ids) - started)
    calls = (redis_calls(st.env["BIPLANE_REDIS_URL"]) - calls_before) / JOBS
    latencies = []
    for _ in range(LATENCY_JOBS):
        t0 = time.perf_counter()
        job = await store.create(GRAPH)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting[job.job_id] = fut
        await submit(bridge, job)
        latencies.append(await fut - t0)
    listener.cancel()
    await redis.aclose()
    return {"jobs_s": throughput, "p50": statistics.median(latencies), "p99": pct(latencies, 0.99), "calls": calls}


def celery_run(redis_url: str, pool: str, concurrency: int) -> dict[str, float]:
    """One Celery configuration: a worker process and a fresh client process (bench.celery_app)."""
    base = redis_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": f"{base}/1",
        "BENCH_CELERY_BACKEND": f"{base}/2",
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        calls = redis_calls(redis_url)
        out = subprocess.run(  # a configuration that stalls is reported as failed, not fatal
            [sys.executable, "-m", "bench.celery_app", str(JOBS), str(LATENCY_JOBS)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if out.returncode != 0:
            raise RuntimeError(f"celery client failed: {out.stderr[-3000:]}")
        result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        result["calls"] = (redis_calls(redis_url) - calls) / (JOBS + LATENCY_JOBS)
        return result
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"stalled: no result within {e.timeout:.0f} s") from e
    finally:
        worker.terminate()
        worker.wait(30)


def run() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with stack(BIPLANE_TASK_MODULES="bench.tasks") as st:
        st.start("control")
        st.start("worker", BIPLANE_CONCURRENCY="64")  # no-op data nodes: not GPU-bound
        ours = asyncio.run(biplane_run(st))
        configs: list[tuple[str, dict[str, Any]]] = []
        for pool in ("prefork", "threads"):
            for n in (1, 2, 4, 8):
                try:
                    configs.append((f"{pool} x{n}", celery_run(st.env["BIPLANE_REDIS_URL"], pool, n)))
                except RuntimeError as e:  # a configuration that stalls is reported, not fatal
                    rows.append((f"Celery chain of 3 no-ops, {pool} x{n}", "failed", str(e)[-120:]))
    if not configs:  # e.g. Celery not installed: `make bench` installs the bench extra
        return [*rows, ("Biplane no-op", f"{ours['jobs_s']:.0f} jobs/s", "no Celery configuration ran")]
    best_name, best = max(configs, key=lambda c: c[1]["jobs_s"])
    fastest_name, fastest = min(configs, key=lambda c: c[1]["p50"])
    for name, r in configs:
        rows.append(
            (
                f"Celery chain of 3 no-ops, {name}",
                f"{r['jobs_s']:.0f} jobs/s",
                f"p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms; {r['calls']:.0f} Redis commands/job",
            )
        )
    rows.append(
        (
            "Biplane control->data->control no-op, 1 control + 1 worker",
            f"{ours['jobs_s']:.0f} jobs/s ({JOBS} in flight)",
            f"p50 {ours['p50'] * 1000:.1f} ms, p99 {ours['p99'] * 1000:.1f} ms (one at a time); "
            f"{ours['calls']:.0f} Redis commands/job incl. submit, 9 events",
        )
    )
    ratio, lat = ours["jobs_s"] / best["jobs_s"], ours["p50"] / fastest["p50"]
    rows.append(
        (
            "throughput vs best Celery",
            f"{ratio:.2f}x (Celery best: {best_name})",
            "target >= 2.00x: " + ("met" if ratio >= 2 else "MISSED"),
        )
    )
    rows.append(
        (
            "p50 latency vs best Celery",
            f"{lat:.2f}x (Celery best: {fastest_name})",
            "target <= 0.50x: " + ("met" if lat <= 0.5 else "MISSED"),
        )
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

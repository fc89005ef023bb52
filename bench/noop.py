"""Hybrid no-op job (control -> data -> control) vs a Celery chain and a Dramatiq pipeline of three no-op tasks,
on the same Redis server, interleaved: each round measures every engine and configuration once.

Targets: throughput >= Dramatiq's best configuration and >= 2x Celery's best; p50 latency one job at a time
<= Celery's best p50 (goal: half of it). Environment: BENCH_ROUNDS (3); BENCH_BASELINE, the path of another
checkout of Biplane (e.g. `git worktree add /tmp/before <commit>`), adds that version's planes to every round:
a before/after comparison from one run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
#: (pool, concurrency): Celery's configurations measured each round (its best ones on a small machine).
CELERY = [("prefork", 4), ("prefork", 8), ("threads", 8)]
#: (processes, threads): Dramatiq's configurations measured each round.
DRAMATIQ = [(1, 8), (2, 8)]
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


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
    cpu_before = {name: cpu_seconds(proc.pid) for name, proc in st.procs.items()}
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
    cpu = {name: (cpu_seconds(proc.pid) - cpu_before[name]) / JOBS for name, proc in st.procs.items()}
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
    return {
        "jobs_s": throughput,
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 0.99),
        "calls": calls,
        "control_cpu": cpu["control"],
        "worker_cpu": cpu["worker"],
    }


def _engine_env(redis_url: str) -> dict[str, str]:
    base = redis_url.rsplit("/", 1)[0]
    return {
        **os.environ,
        "BENCH_CELERY_BROKER": f"{base}/1",
        "BENCH_CELERY_BACKEND": f"{base}/2",
        "BENCH_DRAMATIQ_BROKER": f"{base}/3",
        "BENCH_DRAMATIQ_BACKEND": f"{base}/4",
        "PYTHONPATH": str(ROOT),
    }


def engine_run(redis_url: str, worker_argv: list[str], client_module: str) -> dict[str, float]:
    """One configuration of another engine: its worker process(es) and a fresh client process."""
    env = _engine_env(redis_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", *worker_argv], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        calls, cpu = redis_calls(redis_url), cpu_seconds(worker.pid)
        out = subprocess.run(  # a configuration that stalls is reported as failed, not fatal
            [sys.executable, "-m", client_module, str(JOBS), str(LATENCY_JOBS)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{client_module} failed: {out.stderr[-3000:]}")
        result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        result["calls"] = (redis_calls(redis_url) - calls) / (JOBS + LATENCY_JOBS + 1)
        result["worker_cpu"] = (cpu_seconds(worker.pid) - cpu) / (JOBS + LATENCY_JOBS + 1)
        return result
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"stalled: no result within {e.timeout:.0f} s") from e
    finally:
        worker.terminate()
        worker.wait(30)


def celery_run(redis_url: str, pool: str, concurrency: int) -> dict[str, float]:
    argv = ["celery", "-A", "bench.celery_app", "worker", f"--pool={pool}", f"--concurrency={concurrency}"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"]
    return engine_run(redis_url, argv, "bench.celery_app")


def dramatiq_run(redis_url: str, processes: int, threads: int) -> dict[str, float]:
    argv = ["dramatiq", "bench.dramatiq_app", "--processes", str(processes), "--threads", str(threads)]
    return engine_run(redis_url, argv, "bench.dramatiq_app")


def _version(root: Path) -> str:
    described = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %cs"], capture_output=True, text=True)
    return f"({described.stdout.strip() or root})"


def _figures(r: dict[str, float]) -> str:
    cpu = f"worker CPU {r['worker_cpu'] * 1000:.1f} ms/job"
    if "control_cpu" in r:
        cpu = f"control CPU {r['control_cpu'] * 1000:.1f} ms/job, " + cpu
    return f"p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms; {r['calls']:.0f} Redis commands/job; {cpu}"


def run() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    results: dict[str, list[dict[str, float]]] = {}
    ours_name = "Biplane control->data->control, 1 control + 1 worker"
    with ExitStack() as stacks:
        st = stacks.enter_context(stack(BIPLANE_TASK_MODULES="bench.tasks"))
        st.start("control")
        st.start("worker", BIPLANE_CONCURRENCY="64")  # no-op data nodes: not GPU-bound
        url = st.env["BIPLANE_REDIS_URL"]
        others: list[tuple[str, Any]] = []
        if baseline := os.environ.get("BENCH_BASELINE"):
            old = stacks.enter_context(stack(Path(baseline), BIPLANE_TASK_MODULES="bench.tasks"))
            old.start("control")
            old.start("worker", BIPLANE_CONCURRENCY="64")
            others.append((f"Biplane baseline {_version(Path(baseline))}", lambda: asyncio.run(biplane_run(old))))
        others += [
            (f"Celery chain of 3 no-ops, {pool} x{n}", functools.partial(celery_run, url, pool, n))
            for pool, n in CELERY
        ] + [
            (f"Dramatiq pipeline of 3 no-ops, {p} proc x {t} threads", functools.partial(dramatiq_run, url, p, t))
            for p, t in DRAMATIQ
        ]
        time.sleep(10)  # each worker's forkserver preloads the ML libraries once at start: not part of a round
        for round_no in range(1, ROUNDS + 1):  # interleaved: every engine once per round, same machine state
            measured = [(ours_name, lambda: asyncio.run(biplane_run(st))), *others]
            for name, measure in measured:
                try:
                    r = measure()
                except (RuntimeError, ModuleNotFoundError) as e:  # a stalled or missing engine is reported
                    rows.append((f"{name}, round {round_no}", "failed", str(e)[-120:]))
                    continue
                results.setdefault(name, []).append(r)
                rows.append((f"{name}, round {round_no}", f"{r['jobs_s']:.0f} jobs/s ({JOBS} in flight)", _figures(r)))
    return rows + _summary(results, ours_name)


def _best(results: dict[str, list[dict[str, float]]], engine: str) -> tuple[str, float, float] | None:
    """(configuration, best throughput, best p50) of an engine over every round."""
    runs = [(name, r) for name, rs in results.items() if name.startswith(engine) for r in rs]
    if not runs:
        return None
    top = max(runs, key=lambda c: c[1]["jobs_s"])
    return top[0], top[1]["jobs_s"], min(r["p50"] for _, r in runs)


def _summary(results: dict[str, list[dict[str, float]]], ours_name: str) -> list[tuple[str, str, str]]:
    ours = results.get(ours_name)
    if not ours:
        return []
    jobs_s, p50 = max(r["jobs_s"] for r in ours), min(r["p50"] for r in ours)
    rows = []
    for engine, factor in (("Celery", 2.0), ("Dramatiq", 1.0)):
        best = _best(results, engine)
        if best is None:
            rows.append((f"throughput vs best {engine}", "not measured", f"install the bench extra ({engine})"))
            continue
        name, their_jobs, their_p50 = best
        ratio = jobs_s / their_jobs
        met = "met" if ratio >= factor else "MISSED"
        rows.append((f"throughput vs best {engine}", f"{ratio:.2f}x (best: {name})", f"target >= {factor:.2f}x: {met}"))
        if engine == "Celery":
            lat = p50 / their_p50
            met = "met" if lat <= 1.0 else "MISSED"
            rows.append((f"p50 one at a time vs best {engine}", f"{lat:.2f}x", f"target <= 1.00x (goal 0.50x): {met}"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

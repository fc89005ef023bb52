"""Crash, restart and outage behaviour of the whole stack (real processes, Redis, S3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from client.api import AsyncClient
from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.processes import Plane


async def test_redis_restart_with_50_jobs_queued(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        s = settings.model_copy(update={"redis_url": redis.url, "rate_limit_per_minute": 1000})
        control = plane_factory("control", s)
        api = client(control.url)
        job_ids = [
            api.post("/api/jobs", json=graph_doc({"steps": 2, "artifact": True})).json()["jobId"] for _ in range(50)
        ]
        worker = plane_factory("worker", s)  # starts after all 50 are queued
        await wait_all_final(api, job_ids[:5], 60)
        redis.stop()  # SIGTERM: Redis writes its AOF and exits
        redis.start()
        records = await wait_all_final(api, job_ids, 120)
        assert {r["status"] for r in records.values()} == {"completed"}
        assert len({r["jobId"] for r in records.values()}) == 50
        listed = api.get("/api/jobs", params={"limit": 200}).json()["items"]
        assert sorted(j["jobId"] for j in listed) == sorted(job_ids), "no job lost or duplicated"
        for job_id in job_ids[::7]:
            names = [a["name"] for a in api.get(f"/api/jobs/{job_id}/artifacts").json()["items"]]
            assert names == ["manifest.json", "w/result.txt"]
        assert control.proc and control.proc.poll() is None and worker.proc and worker.proc.poll() is None
    finally:
        redis.stop()


async def test_s3_outage_retries_then_completes_or_fails_clearly(
    own_s3: tuple[S3Server, Settings], plane_factory: Callable[..., Plane]
) -> None:
    s3, s = own_s3
    s = s.model_copy(update={"s3_retry_seconds": 60})
    control = plane_factory("control", s)
    worker = plane_factory("worker", s)
    api = client(control.url)
    job_id = api.post("/api/jobs", json=graph_doc({"steps": 20, "step_seconds": 0.1, "artifact": True})).json()
    async with AsyncClient(control.url, "test-key-1") as c:
        async for ev in c.follow(job_id["jobId"]):
            if ev.kind == "progress" and ev.node_id == "w":
                break
    s3.stop()
    outage = time.monotonic()
    await asyncio.sleep(10)  # the outage itself: the task reaches its upload and must keep retrying
    s3.start()
    record = (await wait_all_final(api, [job_id["jobId"]], 90))[job_id["jobId"]]
    assert record["status"] == "completed", record["error"]
    assert time.monotonic() - outage >= 10
    assert worker.proc and worker.proc.poll() is None and control.proc and control.proc.poll() is None

    short = plane_factory("worker", s, BIPLANE_S3_RETRY_SECONDS="2")
    worker.stop()
    s3.stop()
    doomed = api.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True}, publish=False)).json()
    final = (await wait_all_final(api, [doomed["jobId"]], 60))[doomed["jobId"]]
    assert final["status"] == "failed" and "S3 unreachable" in final["error"]
    assert short.proc and short.proc.poll() is None, "the worker survives the outage"


async def test_100_ws_clients_survive_a_control_restart(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    control = plane_factory("control", settings.model_copy(update={"rate_limit_per_minute": 1000}))
    plane_factory("worker", settings)
    plane_factory("worker", settings)
    api = client(control.url)
    jobs = [
        api.post("/api/jobs", json=graph_doc({"steps": 25, "step_seconds": 0.08})).json()["jobId"] for _ in range(10)
    ]
    started = asyncio.Event()

    async def follower(job_id: str) -> list[int]:
        seqs: list[int] = []
        async with AsyncClient(control.url, "test-key-1") as c:
            async for ev in c.follow(job_id, reconnect=60):
                seqs.append(ev.seq)
                if ev.kind == "progress":
                    started.set()
        return seqs

    tasks = [asyncio.create_task(follower(jobs[i % 10])) for i in range(100)]
    await asyncio.wait_for(started.wait(), 30)
    control.kill()
    control.start()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for i, seqs in enumerate(results):
        assert seqs == list(range(1, len(seqs) + 1)), f"client {i} has a gap or repeat"
    finals = {j: api.get(f"/api/jobs/{j}").json()["status"] for j in jobs}
    assert set(finals.values()) == {"completed"}
    for i, seqs in enumerate(results):
        assert len(seqs) == len(results[i % 10]), "clients of the same job saw the same events"


@pytest.mark.parametrize("workers", [2])
async def test_two_workers_share_jobs_each_runs_once(
    settings: Settings, plane_factory: Callable[..., Plane], workers: int
) -> None:
    control = plane_factory("control", settings)
    pids = {plane_factory("worker", settings).proc.pid for _ in range(workers)}  # type: ignore[union-attr]
    api = client(control.url)
    jobs = [
        api.post("/api/jobs", json=graph_doc({"steps": 5, "step_seconds": 0.05}, publish=False)).json()["jobId"]
        for _ in range(20)
    ]
    records = await wait_all_final(api, jobs, 120)
    assert {r["status"] for r in records.values()} == {"completed"}
    ran_on = [next(n for n in r["graph"]["nodes"] if n["id"] == "w")["output"]["pid"] for r in records.values()]
    assert set(ran_on) == pids, "both workers did work"
    assert all(next(n for n in r["graph"]["nodes"] if n["id"] == "w")["attempts"] == 1 for r in records.values())

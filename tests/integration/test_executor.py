"""A hybrid job graph across two real OS processes (control + worker) through the fixture Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from common.executor import request_cancel
from common.settings import Settings
from tests.support.jobs import Harness, eventually, graph, hybrid
from tests.support.processes import Plane

NODES = ("prep", "a", "b", "join", "publish")


async def test_hybrid_graph_completes_across_two_processes(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("control", settings)
    worker = plane_factory("worker", settings)
    h = Harness(redis, settings)
    job = await h.submit(hybrid({"steps": 5, "step_seconds": 0.05}))
    events = await h.wait_for(job.job_id, lambda e: e.kind == "status" and e.status == "completed", timeout=60)
    final = await h.store.load(job.job_id)
    assert final is not None and final.status == "completed" and final.progress == 1.0

    out = {n.id: n.output for n in final.graph.nodes}
    assert all(n.status == "completed" and n.attempts == 1 for n in final.graph.nodes)
    assert out["prep"]["value"] == 1  # type: ignore[index]
    assert out["a"]["value"] == 11 and out["b"]["value"] == 101  # type: ignore[index]
    assert out["join"] == {"value": 1112, "inputs": ["a", "b"], "pid": out["a"]["pid"]}  # type: ignore[index]
    assert out["publish"]["value"] == 11112 and out["publish"]["inputs"] == ["join"]  # type: ignore[index]
    # The planes really are two processes.
    assert out["prep"]["pid"] != out["a"]["pid"] == worker.proc.pid  # type: ignore[index,union-attr]

    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "events arrive in seq order with no gap"
    assert [e.seq for e in await h.events.replay(job.job_id)] == seqs
    kinds = {e.kind for e in events}
    assert {"status", "node", "progress"} <= kinds
    b_progress = [e.node_progress for e in events if e.kind == "progress" and e.node_id == "b"]
    assert b_progress == sorted(b_progress) and b_progress[-1] == 1.0
    # a and b ran in the same data round, in parallel: each started before the other completed.
    at = {(e.node_id, e.status): e.seq for e in events if e.kind == "node"}
    assert at[("a", "running")] < at[("b", "completed")] and at[("b", "running")] < at[("a", "completed")]


async def test_sigkill_mid_node_resumes_without_rerunning_finished_nodes(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("control", settings)
    first = plane_factory("worker", settings)
    h = Harness(redis, settings)
    job = await h.submit(hybrid({"steps": 40, "step_seconds": 0.05}))
    # a is fast; kill the worker once a is done and b has reported progress.
    await h.wait_for(job.job_id, lambda e: e.kind == "node" and e.node_id == "a" and e.status == "completed")
    await h.wait_for(job.job_id, lambda e: e.kind == "progress" and e.node_id == "b" and (e.step or 0) >= 3)
    first.kill()
    mid = await h.store.load(job.job_id)
    assert mid is not None and mid.status == "running"

    plane_factory("worker", settings)
    final = await h.wait_final(job.job_id, timeout=90)
    assert final.status == "completed", final.error
    runs = {n: await h.runs(job.job_id, n) for n in NODES}
    assert runs == {"prep": 1, "a": 1, "b": 2, "join": 1, "publish": 1}
    assert {n.id: n.attempts for n in final.graph.nodes}["b"] == 2


async def test_duplicate_deliveries_run_each_node_once(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("control", settings)
    plane_factory("worker", settings)
    plane_factory("worker", settings)
    h = Harness(redis, settings)
    job = await h.submit(hybrid({"steps": 10, "step_seconds": 0.02}))
    for plane in ("control", "data", "control", "data"):  # early duplicates on both streams
        await h.bridge.enqueue(plane, job.job_id, "duplicate")  # type: ignore[arg-type]
    await h.wait_for(job.job_id, lambda e: e.kind == "node" and e.node_id == "a" and e.status == "running")
    for plane in ("data", "control", "data"):  # and late ones, mid-run
        await h.bridge.enqueue(plane, job.job_id, "duplicate")  # type: ignore[arg-type]
    final = await h.wait_final(job.job_id)
    assert final.status == "completed"
    assert {n: await h.runs(job.job_id, n) for n in NODES} == dict.fromkeys(NODES, 1)

    async def all_acked() -> bool:  # duplicates still deferred behind the lease get dropped and acked
        pending = [(await h.bridge.depth(p))[1] for p in ("control", "data")]  # type: ignore[arg-type]
        return pending == [0, 0]

    await eventually(all_acked)
    assert {n: await h.runs(job.job_id, n) for n in NODES} == dict.fromkeys(NODES, 1)


async def test_unparseable_entry_is_dead_lettered_and_the_executor_keeps_serving(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("control", settings)
    plane_factory("worker", settings)
    h = Harness(redis, settings)
    await h.bridge.ensure_groups()
    await redis.xadd(h.keys.stream("data"), {"garbage": "yes"})
    await redis.xadd(h.keys.stream("data"), {"job": "no/such job!"})
    await redis.xadd(h.keys.stream("control"), {"job": "a" * 32})  # well-formed, unknown job
    job = await h.submit(hybrid())
    assert (await h.wait_final(job.job_id)).status == "completed"
    dead: list[dict[str, Any]] = []
    for plane in ("data", "control"):
        for _, f in await redis.xrange(h.keys.dead_letter(plane)):
            dead.append({k.decode(): v.decode() for k, v in f.items()})
    reasons = sorted(d["reason"] for d in dead)
    assert len(reasons) == 3
    assert "unknown job" in reasons
    assert sum("malformed 'job' field" in r for r in reasons) == 2
    assert any(json.loads(d["fields"]) == {"garbage": "yes"} for d in dead)


async def test_failures_cancel_and_retries(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("control", settings)
    plane_factory("worker", settings)
    h = Harness(redis, settings)
    two = [("prep", "test.prepare", "control", {}), ("w", "test.work", "data", {})]

    bad_input = await h.submit(graph([two[0], ("w", "test.work", "data", {"fail": "input"})], [("prep", "w")]))
    crash = await h.submit(graph([two[0], ("w", "test.work", "data", {"fail": "crash"})], [("prep", "w")]))
    bad_params = await h.submit(graph([two[0], ("w", "test.work", "data", {"steps": -1})], [("prep", "w")]))
    unknown = await h.submit(graph([two[0], ("w", "test.nope", "data", {})], [("prep", "w")]))

    final = await h.wait_final(bad_input.job_id)
    assert final.status == "failed" and "bad input on purpose" in (final.error or "")
    assert await h.runs(bad_input.job_id, "w") == 1  # expected failures are not retried

    final = await h.wait_final(crash.job_id)
    assert final.status == "failed" and "RuntimeError: crash on purpose" in (final.error or "")
    assert await h.runs(crash.job_id, "w") == settings.max_node_attempts  # bounded retries

    final = await h.wait_final(bad_params.job_id)
    assert final.status == "failed" and "invalid params" in (final.error or "")
    final = await h.wait_final(unknown.job_id)
    assert final.status == "failed" and "not registered" in (final.error or "")

    slow = await h.submit(
        graph([two[0], ("w", "test.work", "data", {"steps": 500, "step_seconds": 0.02})], [("prep", "w")])
    )
    await h.wait_for(slow.job_id, lambda e: e.kind == "progress" and e.node_id == "w")
    await request_cancel(h.bridge, slow.job_id)
    final = await h.wait_final(slow.job_id, timeout=20)
    assert final.status == "canceled"
    assert {n.id: n.status for n in final.graph.nodes} == {"prep": "completed", "w": "canceled"}

"""Batched rounds across two real processes: jobs read together share one LangGraph invocation per plane, and
each job keeps its own lease, events, cancel and failure (one member's slow, failing or canceled node never
holds up or fails another)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from common.executor import request_cancel
from common.models.event_schema import Event
from common.models.graph_schema import GraphDocument
from common.models.job_schema import JobRecord
from common.settings import Settings
from tests.support.jobs import Harness, graph
from tests.support.processes import Plane

NODES = ("prep", "w", "publish")


def three(prep: dict[str, Any] | None = None) -> GraphDocument:
    """control -> data -> control, one node a round (each round can join a batch)."""
    return graph(
        [
            ("prep", "test.prepare", "control", prep or {"steps": 1, "step_seconds": 0}),
            ("w", "test.work", "data", {"value": 10, "steps": 1, "step_seconds": 0}),
            ("publish", "test.publish", "control", {"value": 100, "steps": 1, "step_seconds": 0}),
        ],
        [("prep", "w"), ("w", "publish")],
    )


async def stored(h: Harness, docs: list[GraphDocument]) -> list[JobRecord]:
    """Jobs queued on the control stream before any plane reads it: the first read takes them all."""
    jobs = []
    for doc in docs:
        jobs.append(await h.submit(doc))
    return jobs


def batched_jobs(plane: Plane, name: str) -> float:
    """How many jobs the plane ran in batched rounds (the sum of its batch-size histogram)."""
    text = httpx.get(f"{plane.url}/metrics", timeout=5).text
    found = re.search(rf'^biplane_batch_size_sum{{plane="{name}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def events_in_order(h: Harness, job_id: str) -> list[Event]:
    events = await h.events.replay(job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq order with no gap"
    return events


async def test_a_batch_with_a_failing_a_canceled_and_a_slow_member_finishes_the_others_on_time(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    h = Harness(redis, settings)
    plain = await stored(h, [three() for _ in range(6)])
    failing, canceled, slow = await stored(
        h,
        [
            three({"fail": "crash"}),  # retried within the batch, then failed
            three({"steps": 400, "step_seconds": 0.05}),  # canceled while it runs
            three({"steps": 60, "step_seconds": 0.1}),  # 6 s of work
        ],
    )
    control = plane_factory("control", settings)
    worker = plane_factory("worker", settings, BIPLANE_CONCURRENCY="16")

    await h.wait_for(canceled.job_id, lambda e: e.kind == "progress" and (e.step or 0) >= 1)
    await request_cancel(h.bridge, canceled.job_id)

    slow_done = await h.wait_for(slow.job_id, lambda e: e.kind == "node" and e.status == "completed", timeout=60)
    slow_prep_done = slow_done[-1].ts
    for job in plain:
        final = await h.wait_final(job.job_id)
        assert final.status == "completed", final.error
        out = {n.id: n.output for n in final.graph.nodes}
        assert out["publish"]["value"] == 111  # type: ignore[index]
        for node in NODES:
            assert await h.runs(job.job_id, node) == 1, f"{node} of {job.job_id} ran exactly once"
        events = await events_in_order(h, job.job_id)
        done = next(e for e in events if e.kind == "status" and e.status == "completed")
        assert done.ts < slow_prep_done, "the slow member's node did not hold the others back"

    final = await h.wait_final(failing.job_id)
    assert final.status == "failed" and "RuntimeError: crash on purpose" in (final.error or "")
    assert await h.runs(failing.job_id, "prep") == settings.max_node_attempts  # its own retry budget
    assert {n.id: n.status for n in final.graph.nodes} == {"prep": "failed", "w": "skipped", "publish": "skipped"}

    final = await h.wait_final(canceled.job_id, timeout=20)
    assert final.status == "canceled"
    assert final.graph.nodes[0].status == "canceled"

    final = await h.wait_final(slow.job_id)
    assert final.status == "completed"
    for job in (failing, canceled, slow):
        await events_in_order(h, job.job_id)

    # The nine jobs' first rounds ran batched on control; their data rounds too, on the worker.
    assert batched_jobs(control, "control") >= 9
    assert batched_jobs(worker, "data") >= 2


async def test_a_plane_killed_mid_batch_resumes_every_job_of_the_batch(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    h = Harness(redis, settings)
    jobs = await stored(h, [three({"steps": 80, "step_seconds": 0.1}) for _ in range(5)])  # 8 s: killed mid-node
    first = plane_factory("control", settings)
    plane_factory("worker", settings)
    for job in jobs:
        await h.wait_for(job.job_id, lambda e: e.kind == "progress" and e.node_id == "prep")
    assert batched_jobs(first, "control") == len(jobs)
    first.kill()
    plane_factory("control", settings)

    for job in jobs:
        final = await h.wait_final(job.job_id)
        assert final.status == "completed", final.error
        assert await h.runs(job.job_id, "prep") == 2  # the killed attempt, then the resumed one
        assert await h.runs(job.job_id, "publish") == 1
        events = await events_in_order(h, job.job_id)
        statuses = [e.status for e in events if e.kind == "status"]
        assert statuses == ["queued", "running", "completed"]

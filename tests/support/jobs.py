"""Helpers to build graphs, submit them and wait for events in tests."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

from redis.asyncio import Redis

from common.bridge import Bridge
from common.events import EventLog
from common.executor import submit
from common.jobs import FINAL_STATUSES, JobStore
from common.keys import Keys
from common.models.event_schema import Event
from common.models.graph_schema import GraphDocument
from common.models.job_schema import JobRecord
from common.settings import Settings
from common.storage import Storage


def graph(nodes: list[tuple[str, str, str, dict[str, Any]]], edges: list[tuple[str, str]]) -> GraphDocument:
    """nodes: (id, service, plane, params)."""
    return GraphDocument.model_validate(
        {
            "schemaVersion": "biplane.graph.v1",
            "workflow": "test",
            "nodes": [{"id": i, "service": s, "plane": p, "params": params} for i, s, p, params in nodes],
            "edges": [{"from": a, "to": b} for a, b in edges],
        }
    )


def hybrid(slow_b: dict[str, Any] | None = None) -> GraphDocument:
    """control -> data || data -> data -> control."""
    return graph(
        [
            ("prep", "test.prepare", "control", {"value": 1}),
            ("a", "test.work", "data", {"value": 10}),
            ("b", "test.work", "data", {"value": 100, **(slow_b or {})}),
            ("join", "test.work", "data", {"value": 1000}),
            ("publish", "test.publish", "control", {"value": 10000}),
        ],
        [("prep", "a"), ("prep", "b"), ("a", "join"), ("b", "join"), ("join", "publish")],
    )


class Harness:
    """The shared runtime pieces a test needs to drive jobs through real Redis."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis, self.settings, self.keys = redis, settings, Keys(settings.key_prefix)
        self.events = EventLog(redis, self.keys, settings.event_maxlen)
        self.store = JobStore(redis, self.keys, self.events, settings.job_ttl_seconds)
        self.bridge = Bridge(redis, self.keys, settings)

    async def submit(self, doc: GraphDocument) -> JobRecord:
        await self.bridge.ensure_groups()
        job = await self.store.create(doc, owner="tester")
        await submit(self.bridge, job)
        return job

    async def donor(self) -> str:
        """A job of the test's owner that holds input files other jobs reference (as an earlier job's
        uploads would): references to another job must name one of the same owner."""
        job = await self.store.create(graph([("d", "test.work", "data", {})], []), owner="tester")
        return job.job_id

    async def runs(self, job_id: str, node_id: str) -> int:
        return int(await self.redis.get(f"{self.settings.key_prefix}:test:runs:{job_id}:{node_id}") or 0)

    async def wait_for(self, job_id: str, predicate: Any, timeout: float = 60) -> list[Event]:
        """Collect the job's events (replay, then live) until predicate(event) holds."""
        seen: list[Event] = []
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.keys.events_channel())
        try:
            async with asyncio.timeout(timeout):
                for ev in await self.events.replay(job_id):
                    seen.append(ev)
                    if predicate(ev):
                        return seen
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    ev = Event.model_validate(json.loads(msg["data"]))
                    if ev.job_id != job_id or (seen and ev.seq <= seen[-1].seq):
                        continue
                    seen.append(ev)
                    if predicate(ev):
                        return seen
        finally:
            await pubsub.aclose()

    async def wait_final(self, job_id: str, timeout: float = 60) -> JobRecord:
        await self.wait_for(job_id, lambda e: e.kind == "status" and e.status in FINAL_STATUSES, timeout)
        job = await self.store.load(job_id)
        assert job is not None
        return job


async def eventually(check: Any, timeout: float = 20, what: str = "condition", interval: float = 0.05) -> None:
    """Poll check() (plain or async) on the event loop until it is truthy, for state that has no event (stream
    acks, a page's text); other tasks on the loop (the UI's) keep running in between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


def checkpoint_steps(storage: Storage, job_id: str, node_id: str = "train") -> list[int]:
    """The steps of the training checkpoints a node saved to S3, ascending."""
    keys = storage.list(f"jobs/{job_id}/{node_id}/checkpoints/")
    return sorted(int(k.rsplit("step-", 1)[1].removesuffix(".pt")) for k in keys)

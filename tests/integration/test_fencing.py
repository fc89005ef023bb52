"""Progress and task events are fenced by the job's lease in Redis: a worker that lost its lease (paused past
it, then resumed) publishes nothing more for that job, while the lease holder's writes go through."""

from __future__ import annotations

from redis.asyncio import Redis

from common.events import body
from common.settings import Settings
from tests.support.jobs import Harness, graph


async def test_a_stale_lease_holder_writes_no_progress_and_no_event(redis: Redis, settings: Settings) -> None:
    h = Harness(redis, settings)
    job = await h.store.create(graph([("w", "test.work", "data", {})], []), owner="tester")
    [(acquired, _, _)] = await h.bridge.acquire([(job.job_id, "new-owner")], 30_000)
    assert acquired
    before = await h.events.last_seq(job.job_id)

    event = body(job.job_id, "progress", {"nodeId": "w", "nodeProgress": 0.5, "progress": 0.5})
    assert not await h.store.set_progress(job.job_id, "w", 0.5, 0.5, event, "paused-worker")
    assert await h.events.emit(job.job_id, "log", fence="paused-worker", nodeId="w", message="stale") == 0
    assert await h.events.last_seq(job.job_id) == before
    record = await h.store.load(job.job_id)
    assert record is not None and record.progress == 0.0

    assert await h.store.set_progress(job.job_id, "w", 0.5, 0.5, event, "new-owner")
    assert await h.events.emit(job.job_id, "log", fence="new-owner", nodeId="w", message="fresh") == before + 2
    kinds = [e.kind for e in await h.events.replay(job.job_id, before)]
    assert kinds == ["progress", "log"]
    record = await h.store.load(job.job_id)
    assert record is not None and record.progress == 0.5

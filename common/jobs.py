"""Job records in Redis: the single source of truth, one hash per job.

Fields: `graph` (the submitted document), `status`, `owner`, `workflow`, `createdAt`, `updatedAt`,
`progress`, `error`, and per node `n:<id>:status|output|error|attempts|progress`. Per-node fields let
parallel nodes save their state without read-modify-write races.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from common.events import EventLog
from common.keys import Keys
from common.models.graph_schema import GraphDocument, NodeStatus
from common.models.job_schema import JobRecord, JobStatus

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled"})
NODE_DONE: frozenset[str] = frozenset({"completed", "failed", "skipped", "canceled"})

# Moves a job to a new status unless it already ended; returns 1 when it moved.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
if cur == 'completed' or cur == 'failed' or cur == 'canceled' then return 0 end
if cur == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updatedAt', ARGV[2])
if ARGV[1] == 'completed' then redis.call('HSET', KEYS[1], 'progress', '1') end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


def new_job_id() -> str:
    return uuid.uuid4().hex


def _nf(node_id: str, field: str) -> str:
    return f"n:{node_id}:{field}"


class JobStore:
    def __init__(self, redis: Redis, keys: Keys, events: EventLog, ttl: int) -> None:
        self.redis: Any = redis  # redis-py types replies as unions of RESP2/3 shapes; replies are decoded where read
        self.keys, self.events, self.ttl = keys, events, ttl
        self._transition = redis.register_script(_TRANSITION)

    async def create(
        self, graph: GraphDocument, owner: str | None = None, job_id: str | None = None, webhook: str | None = None
    ) -> JobRecord:
        """Store a new queued job; the graph's node state fields are reset."""
        job_id = job_id or graph.job_id or new_job_id()
        now = time.time()
        doc = graph.model_copy(update={"job_id": job_id})
        fields: dict[str, str] = {
            "graph": doc.model_dump_json(by_alias=True, exclude={"nodes": {"__all__": _STATE}}),
            "workflow": doc.workflow,
            "status": "queued",
            "owner": owner or "",
            "createdAt": repr(now),
            "updatedAt": repr(now),
            "progress": "0",
            "webhook": webhook or "",
        }
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(self.keys.job(job_id), mapping=fields)
            p.zadd(self.keys.jobs_index(), {job_id: now})
            if owner:
                p.zadd(self.keys.owner_index(owner), {job_id: now})
            await p.execute()
        await self.events.emit(job_id, "status", status="queued")
        record = await self.load(job_id)
        assert record is not None
        return record

    async def load(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        graph = json.loads(h["graph"])
        for node in graph["nodes"]:
            nid = node["id"]
            node["status"] = h.get(_nf(nid, "status"), "pending")
            node["attempts"] = int(h.get(_nf(nid, "attempts"), 0))
            node["progress"] = float(h.get(_nf(nid, "progress"), 0))
            node["output"] = json.loads(h[_nf(nid, "output")]) if _nf(nid, "output") in h else None
            node["error"] = h.get(_nf(nid, "error"))
        return JobRecord.model_validate(
            {
                "jobId": job_id,
                "workflow": h["workflow"],
                "status": h["status"],
                "owner": h.get("owner") or None,
                "webhook": h.get("webhook") or None,
                "progress": float(h.get("progress", 0)),
                "error": h.get("error") or None,
                "createdAt": float(h["createdAt"]),
                "updatedAt": float(h["updatedAt"]),
                "graph": graph,
            }
        )

    async def set_status(self, job_id: str, status: JobStatus, error: str | None = None) -> bool:
        """Move the job to status (never out of a final one) and emit a `status` event when it moved."""
        ttl = self.ttl if status in TERMINAL else 0
        moved = await self._transition(keys=[self.keys.job(job_id)], args=[status, repr(time.time()), error or "", ttl])
        if int(moved) == 1:
            await self.events.emit(job_id, "status", status=status, error=error, ttl=ttl)
            return True
        return False

    async def node_started(self, job_id: str, node_id: str) -> int:
        """Mark a node running and count the attempt; returns the attempt number (1-based)."""
        key = self.keys.job(job_id)
        async with self.redis.pipeline(transaction=True) as p:
            p.hincrby(key, _nf(node_id, "attempts"), 1)
            p.hset(key, mapping={_nf(node_id, "status"): "running", "updatedAt": repr(time.time())})
            p.hdel(key, _nf(node_id, "error"))
            attempts, *_ = await p.execute()
        await self.events.emit(job_id, "node", nodeId=node_id, status="running")
        return int(attempts)

    async def node_completed(self, job_id: str, node_id: str, output: dict[str, Any], overall: float) -> None:
        """Save a node's output (and the job's overall progress) the moment it finishes."""
        await self.redis.hset(
            self.keys.job(job_id),
            mapping={
                _nf(node_id, "status"): "completed",
                _nf(node_id, "output"): json.dumps(output, separators=(",", ":")),
                _nf(node_id, "progress"): "1",
                "progress": repr(overall),
                "updatedAt": repr(time.time()),
            },
        )
        await self.events.emit(
            job_id, "node", nodeId=node_id, status="completed", output=output, progress=round(overall, 6)
        )

    async def node_ended(self, job_id: str, node_id: str, status: NodeStatus, error: str | None = None) -> None:
        """Record a node that will not complete (failed, skipped, canceled)."""
        mapping = {_nf(node_id, "status"): status, "updatedAt": repr(time.time())}
        if error:
            mapping[_nf(node_id, "error")] = error
        await self.redis.hset(self.keys.job(job_id), mapping=mapping)
        await self.events.emit(job_id, "node", nodeId=node_id, status=status, error=error)

    async def load_many(self, job_ids: list[str]) -> list[JobRecord]:
        records = [await self.load(j) for j in job_ids]
        return [r for r in records if r is not None]

    async def page(self, owner: str, before: float | None, limit: int) -> list[tuple[str, float]]:
        """(job id, created) of owner's jobs, newest first, created strictly before `before`."""
        rows = await self.redis.zrevrangebyscore(
            self.keys.owner_index(owner),
            f"({before!r}" if before is not None else "+inf",
            "-inf",
            start=0,
            num=limit,
            withscores=True,
        )
        return [(k.decode(), float(score)) for k, score in rows]

    async def set_progress(self, job_id: str, node_id: str, node_progress: float, overall: float) -> None:
        await self.redis.hset(
            self.keys.job(job_id),
            mapping={_nf(node_id, "progress"): repr(node_progress), "progress": repr(overall)},
        )


#: Node fields that are run state, not part of the submitted document.
_STATE = {"status", "progress", "output", "error", "attempts"}


def overall_progress(record: JobRecord, override: dict[str, float] | None = None) -> float:
    """Weighted mean of node progress (completed nodes count as 1)."""
    override = override or {}
    total = weighted = 0.0
    for n in record.graph.nodes:
        w = n.progress_weight if n.progress_weight is not None else 1.0
        p = 1.0 if n.status == "completed" else override.get(n.id, n.progress or 0.0)
        total += w
        weighted += w * p
    return min(1.0, weighted / total) if total else 0.0

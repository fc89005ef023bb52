"""Job records in Redis: the single source of truth, one hash per job.

Fields: `graph` (the submitted document), `status`, `owner`, `workflow`, `createdAt`, `updatedAt`,
`progress`, `error`, and per node `n:<id>:status|output|error|attempts|progress`. Per-node fields let
parallel nodes save their state without read-modify-write races.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, get_args

from redis.asyncio import Redis

from common.events import EMIT_FUNCTION, EventLog, body
from common.keys import Keys
from common.models.graph_schema import GraphDocument, NodeStatus
from common.models.job_schema import FinalStatus, JobRecord, JobStatus
from common.pipelining import coalescer

#: The statuses a job never leaves, as the job schema states them.
FINAL_STATUSES: frozenset[str] = frozenset(get_args(FinalStatus.__value__))

# Each script changes the record and appends its event(s) in one atomic round trip (EMIT_FUNCTION).
# KEYS: job, seq, events, channel (+ indexes for create).

# Move the job to a status unless it already ended (or is in it): 1 when it moved and emitted its event.
TRANSITION_FUNCTION = (
    "local FINAL = {"
    + ", ".join(f"{s} = true" for s in sorted(FINAL_STATUSES))
    + "}\n"
    + """
local function transition(status, now, err, ttl, event, maxlen)
  local cur = redis.call('HGET', KEYS[1], 'status')
  if not cur then return -1 end
  if FINAL[cur] or cur == status then return 0 end
  redis.call('HSET', KEYS[1], 'status', status, 'updatedAt', now)
  if status == 'completed' then redis.call('HSET', KEYS[1], 'progress', '1') end
  if err ~= '' then redis.call('HSET', KEYS[1], 'error', err) end
  if tonumber(ttl) > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
  emit(KEYS[2], KEYS[3], KEYS[4], event, maxlen, ttl)
  return 1
end
"""
)

# ARGV: status, now, error, ttl, event body, events maxlen.
_TRANSITION = EMIT_FUNCTION + TRANSITION_FUNCTION + "return transition(unpack(ARGV, 1, 6))"

# A node's state; with its first node a queued job starts running (that event comes first).
# ARGV: node event body ('' none), events maxlen, a field to HINCRBY ('' none; its new value is returned),
# a field to HDEL ('' none), the job's `running` event body ('' = leave the job as it is), now, then
# field/value pairs to HSET.
_UPDATE = (
    EMIT_FUNCTION
    + TRANSITION_FUNCTION
    + """
local n = 0
if ARGV[5] ~= '' then transition('running', ARGV[6], '', 0, ARGV[5], ARGV[2]) end
if ARGV[3] ~= '' then n = redis.call('HINCRBY', KEYS[1], ARGV[3], 1) end
if ARGV[4] ~= '' then redis.call('HDEL', KEYS[1], ARGV[4]) end
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
if ARGV[1] ~= '' then emit(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], 0) end
return n
"""
)

# A node's progress (record fields + its event), only while KEYS[5] (the job's lease) holds ARGV[1].
# ARGV: lease token, event body ('' none), events maxlen, then field/value pairs to HSET.
_PROGRESS = (
    EMIT_FUNCTION
    + """
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[2] ~= '' then emit(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3], 0) end
return 1
"""
)

# A new job: the record, the index entries (KEYS[5] all jobs, KEYS[6] the owner's: ARGV[5] says whether),
# and its `queued` event. ARGV[4] the creation time, then the record's field/value pairs.
_CREATE = (
    EMIT_FUNCTION
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[6])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[6], ARGV[4], ARGV[6]) end
return emit(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
"""
)


def new_job_id() -> str:
    return uuid.uuid4().hex


def _nf(node_id: str, field: str) -> str:
    return f"n:{node_id}:{field}"


class JobStore:
    def __init__(self, redis: Redis, keys: Keys, events: EventLog, ttl: int) -> None:
        self.redis: Any = redis  # redis-py types replies as unions of RESP2/3 shapes; replies are decoded where read
        self.keys, self.events, self.ttl = keys, events, ttl
        self._transition = redis.register_script(_TRANSITION)
        self._update = redis.register_script(_UPDATE)
        self._create = redis.register_script(_CREATE)
        self._progress = redis.register_script(_PROGRESS)
        self.calls = coalescer(redis)

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
        await self.calls.script(
            self._create,
            [
                self.keys.job(job_id),
                *self.events.script_keys(job_id),
                self.keys.jobs_index(),
                self.keys.owner_index(owner or "-"),
            ],
            args=[
                body(job_id, "status", {"status": "queued"}),
                self.events.maxlen,
                0,
                repr(now),
                "1" if owner else "0",
                job_id,
                *[x for kv in fields.items() for x in kv],
            ],
        )
        return record(job_id, fields)

    async def load(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return record_from_hash(job_id, raw)

    async def set_status(self, job_id: str, status: JobStatus, error: str | None = None) -> bool:
        """Move the job to status (never out of a final one) and emit a `status` event when it moved."""
        ttl = self.ttl if status in FINAL_STATUSES else 0
        event = body(job_id, "status", {"status": status, "error": error})
        moved = await self.calls.script(
            self._transition,
            [self.keys.job(job_id), *self.events.script_keys(job_id)],
            [status, repr(time.time()), error or "", ttl, event, self.events.maxlen],
        )
        return int(moved) == 1

    async def _change(
        self, job_id: str, event: str, mapping: dict[str, str], incr: str = "", delete: str = "", start: bool = False
    ) -> int:
        running = body(job_id, "status", {"status": "running"}) if start else ""
        args: list[str | int] = [event, self.events.maxlen, incr, delete, running, repr(time.time())]
        args += [x for kv in mapping.items() for x in kv]
        return int(
            await self.calls.script(self._update, [self.keys.job(job_id), *self.events.script_keys(job_id)], args)
        )

    async def node_started(self, job_id: str, node_id: str, start_job: bool = False) -> int:
        """Mark a node running and count the attempt; returns the attempt number (1-based).
        start_job: also move a queued job to running (its event comes first)."""
        return await self._change(
            job_id,
            body(job_id, "node", {"nodeId": node_id, "status": "running"}),
            {_nf(node_id, "status"): "running", "updatedAt": repr(time.time())},
            incr=_nf(node_id, "attempts"),
            delete=_nf(node_id, "error"),
            start=start_job,
        )

    async def node_completed(self, job_id: str, node_id: str, output: dict[str, Any], overall: float) -> None:
        """Save a node's output (and the job's overall progress) the moment it finishes."""
        event = {"nodeId": node_id, "status": "completed", "output": output, "progress": round(overall, 6)}
        await self._change(
            job_id,
            body(job_id, "node", event),
            {
                _nf(node_id, "status"): "completed",
                _nf(node_id, "output"): json.dumps(output, separators=(",", ":")),
                _nf(node_id, "progress"): "1",
                "progress": repr(overall),
                "updatedAt": repr(time.time()),
            },
        )

    async def node_ended(self, job_id: str, node_id: str, status: NodeStatus, error: str | None = None) -> None:
        """Record a node that will not complete (failed, skipped, canceled)."""
        mapping = {_nf(node_id, "status"): status, "updatedAt": repr(time.time())}
        if error:
            mapping[_nf(node_id, "error")] = error
        await self._change(job_id, body(job_id, "node", {"nodeId": node_id, "status": status, "error": error}), mapping)

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

    async def set_progress(
        self, job_id: str, node_id: str, node_progress: float, overall: float, event: str, lease_token: str
    ) -> bool:
        """Save a node's progress (and the job's) with its event, in one round trip, while the lease is ours."""
        keys = [self.keys.job(job_id), *self.events.script_keys(job_id), self.keys.lease(job_id)]
        args: list[str | int] = [lease_token, event, self.events.maxlen, _nf(node_id, "progress"), repr(node_progress)]
        return bool(await self.calls.script(self._progress, keys, [*args, "progress", repr(overall)]))


def record_from_hash(job_id: str, raw: dict[bytes, bytes]) -> JobRecord | None:
    """The job record from its Redis hash as HGETALL returns it (None when the job does not exist)."""
    if not raw:
        return None
    return record(job_id, {k.decode(): v.decode() for k, v in raw.items()})


def record(job_id: str, h: dict[str, str]) -> JobRecord:
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

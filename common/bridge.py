"""Redis Streams bridge between the planes: job streams, consumer groups, leases, handoff, heartbeats."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from common.keys import GROUP, JOB_ID, Keys
from common.models.graph_schema import Plane
from common.models.manifest_schema import CapabilityManifest
from common.pipelining import coalescer
from common.settings import Settings

log = structlog.get_logger(__name__)

# Leases of several jobs in one round trip: per job (KEYS lease, cancel flag, record; ARGV its token, then the ttl
# last) take the lease when free or already held with this token; say whether cancel was requested and return the
# job record (HGETALL), so a round starts with one round trip for the whole batch.
_ACQUIRE = """
local ttl = ARGV[#ARGV]
local out = {}
for i = 1, #ARGV - 1 do
  local k = 3 * i - 2
  local cur = redis.call('GET', KEYS[k])
  if (not cur) or cur == ARGV[i] then
    redis.call('SET', KEYS[k], ARGV[i], 'PX', ttl)
    out[i] = {1, redis.call('EXISTS', KEYS[k + 1]), redis.call('HGETALL', KEYS[k + 2])}
  else
    out[i] = {0, 0, {}}
  end
end
return out
"""

# The end of a handling, in one round trip: release our lease, push the job to the next plane's stream
# once per job state (KEYS[2] dedupe key, KEYS[3] that stream; ARGV[3] '' = no handoff), ack our entry
# last (KEYS[4], ARGV[5] the group, ARGV[6] the entry): a crash before this leaves the entry pending.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local added = false
if ARGV[3] ~= '' and redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  added = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'job', ARGV[3], 'reason', 'handoff')
end
redis.call('XACK', KEYS[4], ARGV[5], ARGV[6])
return added
"""

# Renew leases we hold (KEYS lease, cancel flag per job; ARGV its token, then the ttl last) and say per job
# whether it is still ours and whether cancel was requested: {owned, canceled, owned, canceled, ...}.
_RENEW = """
local ttl = ARGV[#ARGV]
local out = {}
for i = 1, #ARGV - 1 do
  local owned = 0
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[i] then
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
    owned = 1
  end
  out[2 * i - 1] = owned
  out[2 * i] = redis.call('EXISTS', KEYS[2 * i])
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def connect(settings: Settings) -> Redis:
    """A redis.asyncio client that retries with backoff when Redis goes away."""
    return Redis.from_url(
        settings.redis_url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
    )


@dataclass(frozen=True)
class Entry:
    """One delivery from a job stream."""

    plane: Plane
    id: str
    job_id: str
    reason: str


@dataclass(frozen=True)
class BadEntry:
    """A delivery that cannot be parsed; it goes to the dead-letter stream with its reason."""

    plane: Plane
    id: str
    fields: dict[str, str]
    reason: str


class Bridge:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis: Any = redis  # redis-py types replies as unions of RESP2/3 shapes; replies are decoded where read
        self.keys = keys
        self.maxlen = settings.stream_maxlen
        self.dedupe_ttl = settings.job_ttl_seconds
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._finish = redis.register_script(_FINISH)
        self.calls = coalescer(redis)

    # -- streams ---------------------------------------------------------------------------------
    async def ensure_groups(self) -> None:
        """Create both job streams' consumer group (idempotent: only BUSYGROUP is ignored)."""
        for plane in ("control", "data"):
            try:
                await self.redis.xgroup_create(self.keys.stream(plane), GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def enqueue(self, plane: Plane, job_id: str, reason: str = "submit") -> str:
        entry_id = await self.redis.xadd(
            self.keys.stream(plane), {"job": job_id, "reason": reason}, maxlen=self.maxlen, approximate=True
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(self, plane: Plane, consumer: str, count: int, block_ms: int) -> list[Entry | BadEntry]:
        """New entries for this consumer (blocking up to block_ms)."""
        resp = await self.redis.xreadgroup(GROUP, consumer, {self.keys.stream(plane): ">"}, count=count, block=block_ms)
        return [self._decode(plane, eid, f) for _, rows in resp or [] for eid, f in rows]

    async def read_own_pending(self, plane: Plane, consumer: str, count: int = 100) -> list[Entry | BadEntry]:
        """Entries delivered to this consumer name and never acked (a restart of the same name)."""
        resp = await self.redis.xreadgroup(GROUP, consumer, {self.keys.stream(plane): "0"}, count=count)
        return [self._decode(plane, eid, f) for _, rows in resp or [] for eid, f in rows if f]

    async def claim_stale(
        self, plane: Plane, consumer: str, min_idle_ms: int, count: int = 10
    ) -> list[Entry | BadEntry]:
        """XAUTOCLAIM entries whose consumer went quiet (died) for longer than min_idle_ms."""
        resp = await self.redis.xautoclaim(
            self.keys.stream(plane), GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        rows = resp[1] if resp else []
        return [self._decode(plane, eid, f) for eid, f in rows if f]

    async def touch(self, plane: Plane, consumer: str, entry_ids: list[str]) -> None:
        """Reset entries' idle time while we work on them, so nobody XAUTOCLAIMs a live job."""
        await self.redis.xclaim(self.keys.stream(plane), GROUP, consumer, 0, entry_ids, justid=True)

    async def hand_back(self, e: Entry) -> None:
        """Re-queue e's job as a new entry and ack e (in that order: a crash between leaves a duplicate,
        which the lease makes harmless, never a lost job)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.stream(e.plane), {"job": e.job_id, "reason": "handback"}, maxlen=self.maxlen, approximate=True
            )
            pipe.xack(self.keys.stream(e.plane), GROUP, e.id)
            await pipe.execute()

    async def ack(self, plane: Plane, entry_id: str) -> None:
        await self.redis.xack(self.keys.stream(plane), GROUP, entry_id)

    async def dead_letter(self, bad: BadEntry) -> None:
        """Move an unusable entry to the dead-letter stream with its reason, and ack it."""
        await self.redis.xadd(
            self.keys.dead_letter(bad.plane),
            {"entry": bad.id, "fields": json.dumps(bad.fields), "reason": bad.reason, "ts": repr(time.time())},
            maxlen=self.maxlen,
            approximate=True,
        )
        await self.ack(bad.plane, bad.id)
        log.warning("dead-lettered stream entry", plane=bad.plane, entry=bad.id, reason=bad.reason)

    def _decode(self, plane: Plane, raw_id: bytes | str, raw: dict[bytes, bytes]) -> Entry | BadEntry:
        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        job_id = fields.get("job", "")
        if not JOB_ID.fullmatch(job_id):
            return BadEntry(plane, entry_id, fields, f"missing or malformed 'job' field: {job_id[:80]!r}")
        return Entry(plane=plane, id=entry_id, job_id=job_id, reason=fields.get("reason", ""))

    async def depth(self, plane: Plane) -> tuple[int, int]:
        """(entries not yet delivered to the group = backlog, entries delivered but not acked = pending)."""
        stream = self.keys.stream(plane)
        try:
            group = next(g for g in await self.redis.xinfo_groups(stream) if _text(g["name"]) == GROUP)
        except (ResponseError, StopIteration):
            return 0, 0
        return int(group.get("lag") or 0), int(group["pending"])

    # -- leases and cancel ----------------------------------------------------------------------
    async def acquire(self, claims: list[tuple[str, str]], ttl_ms: int) -> list[tuple[bool, bool, dict[bytes, bytes]]]:
        """Take the leases of (job id, token) claims in one round trip; per claim (acquired, cancel requested, the
        job's hash: empty when none)."""
        keys = [
            k
            for job_id, _ in claims
            for k in (self.keys.lease(job_id), self.keys.cancel(job_id), self.keys.job(job_id))
        ]
        rows = await self._acquire(keys=keys, args=[*(token for _, token in claims), ttl_ms])
        return [(bool(a), bool(c), dict(zip(flat[::2], flat[1::2], strict=True))) for a, c, flat in rows]

    async def finish(self, e: Entry, token: str, handoff: tuple[Plane, str] | None) -> None:
        """Release the lease, hand the job to (plane, state token) when given, and ack e: one round trip."""
        plane, state = handoff or (e.plane, "")
        await self.calls.script(
            self._finish,
            [
                self.keys.lease(e.job_id),
                self.keys.handoff(e.job_id, plane, state),
                self.keys.stream(plane),
                self.keys.stream(e.plane),
            ],
            [token, self.maxlen, e.job_id if handoff else "", self.dedupe_ttl, GROUP, e.id],
        )

    async def renew(self, claims: list[tuple[str, str]], ttl_ms: int) -> list[tuple[bool, bool]]:
        """Extend our leases of (job id, token) claims in one round trip; per claim (still ours, cancel requested)."""
        keys = [k for job_id, _ in claims for k in (self.keys.lease(job_id), self.keys.cancel(job_id))]
        flat = await self._renew(keys=keys, args=[*(token for _, token in claims), ttl_ms])
        return [(bool(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def release(self, job_id: str, token: str) -> None:
        await self.calls.script(self._release, [self.keys.lease(job_id)], [token])

    async def request_cancel(self, job_id: str) -> None:
        await self.redis.set(self.keys.cancel(job_id), "1", ex=self.dedupe_ttl)

    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.cancel(job_id)))

    # -- heartbeats ------------------------------------------------------------------------------
    async def heartbeat(self, manifest: CapabilityManifest) -> None:
        await self.redis.hset(self.keys.heartbeats(), manifest.instance or "", manifest.model_dump_json(by_alias=True))

    async def forget(self, instance: str) -> None:
        await self.redis.hdel(self.keys.heartbeats(), instance)

    async def live_manifests(self, max_age: float) -> list[CapabilityManifest]:
        """Manifests whose heartbeat is younger than max_age seconds; older ones are removed."""
        now = time.time()
        live: list[tuple[bytes, CapabilityManifest]] = []
        stale: list[tuple[bytes, CapabilityManifest]] = []
        for instance, raw in (await self.redis.hgetall(self.keys.heartbeats())).items():
            m = CapabilityManifest.model_validate_json(raw)
            (live if (m.ts or 0) > now - max_age else stale).append((instance, m))
        if stale:
            await self.redis.hdel(self.keys.heartbeats(), *[i for i, _ in stale])
        return [m for _, m in live]

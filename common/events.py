"""Job events: a per-job seq, a capped Redis stream for replay and one Pub/Sub channel for live fan-out."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from common.keys import Keys
from common.models.event_schema import Event, EventKind
from common.pipelining import coalescer

# One atomic step, so seq order = stream order = publish order even with concurrent emitters.
# `body` is the event JSON without seq (an object); seq is spliced in as its first member and the
# stream entry id is "<seq>-0", which makes "replay after seq N" a plain XRANGE. Scripts that change a
# job record prepend this function, so the change and its event cost one round trip (common/jobs.py).
EMIT_FUNCTION = """
local function emit(seq_key, stream, channel, body, maxlen, ttl)
  local seq = redis.call('INCR', seq_key)
  body = '{"seq":' .. seq .. ',' .. string.sub(body, 2)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, seq .. '-0', 'e', body)
  redis.call('PUBLISH', channel, body)
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', seq_key, ttl)
    redis.call('EXPIRE', stream, ttl)
  end
  return seq
end
"""
_EMIT = EMIT_FUNCTION + "return emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])"
# The same, only while KEYS[4] (the job's lease) holds ARGV[4]: a worker that lost its lease stays silent.
_FENCED_EMIT = (
    EMIT_FUNCTION
    + "if redis.call('GET', KEYS[4]) ~= ARGV[4] then return 0 end\n"
    + "return emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])"
)


class EventLog:
    def __init__(self, redis: Redis, keys: Keys, maxlen: int) -> None:
        self.redis: Any = redis  # redis-py types replies as unions of RESP2/3 shapes; replies are decoded where read
        self.keys, self.maxlen = keys, maxlen
        self._emit = redis.register_script(_EMIT)
        self._fenced_emit = redis.register_script(_FENCED_EMIT)
        self.calls = coalescer(redis)

    async def emit(self, job_id: str, kind: EventKind, *, ttl: int = 0, fence: str = "", **fields: Any) -> int:
        """Append and publish one event; returns its seq (0: not emitted, the lease is not `fence`'s).
        fields use the wire (camelCase) names."""
        args: list[str | int] = [body(job_id, kind, fields), self.maxlen, ttl]
        if fence:
            keys = [*self.script_keys(job_id), self.keys.lease(job_id)]
            return int(await self.calls.script(self._fenced_emit, keys, [*args, fence]))
        return int(await self.calls.script(self._emit, self.script_keys(job_id), args))

    def script_keys(self, job_id: str) -> list[str]:
        """The keys `emit(...)` in EMIT_FUNCTION needs, in order."""
        return [self.keys.job_seq(job_id), self.keys.job_events(job_id), self.keys.events_channel()]

    async def replay(self, job_id: str, since: int = 0, count: int | None = None) -> list[Event]:
        """Every stored event with seq > since, in order."""
        rows = await self.redis.xrange(self.keys.job_events(job_id), min=f"({since}-0", max="+", count=count)
        return [Event.model_validate_json(fields[b"e"]) for _, fields in rows]

    async def last_seq(self, job_id: str) -> int:
        return int(await self.redis.get(self.keys.job_seq(job_id)) or 0)


def body(job_id: str, kind: EventKind, fields: dict[str, Any]) -> str:
    """An event's JSON without its seq (Redis adds it); fields use the wire (camelCase) names."""
    event = {"jobId": job_id, "ts": round(time.time(), 6), "kind": kind}
    event.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(event, separators=(",", ":"))

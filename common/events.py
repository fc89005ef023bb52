"""Job events: a per-job seq, a capped Redis stream for replay and one Pub/Sub channel for live fan-out."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from common.keys import Keys
from common.models.event_schema import Event, EventKind

# One atomic step, so seq order = stream order = publish order even with concurrent emitters.
# ARGV[1] is the event JSON without seq (an object); seq is spliced in as its first member and the
# stream entry id is "<seq>-0", which makes "replay after seq N" a plain XRANGE.
_EMIT = """
local seq = redis.call('INCR', KEYS[1])
local body = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', body)
redis.call('PUBLISH', KEYS[3], body)
if tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return seq
"""


class EventLog:
    def __init__(self, redis: Redis, keys: Keys, maxlen: int) -> None:
        self.redis: Any = redis  # redis-py types replies as unions of RESP2/3 shapes; replies are decoded where read
        self.keys, self.maxlen = keys, maxlen
        self._emit = redis.register_script(_EMIT)

    async def emit(self, job_id: str, kind: EventKind, *, ttl: int = 0, **fields: Any) -> int:
        """Append and publish one event; returns its seq. fields use the wire (camelCase) names."""
        body = {"jobId": job_id, "ts": round(time.time(), 6), "kind": kind}
        body.update({k: v for k, v in fields.items() if v is not None})
        seq = await self._emit(
            keys=[self.keys.job_seq(job_id), self.keys.job_events(job_id), self.keys.events_channel()],
            args=[json.dumps(body, separators=(",", ":")), self.maxlen, ttl],
        )
        return int(seq)

    async def replay(self, job_id: str, since: int = 0, count: int | None = None) -> list[Event]:
        """Every stored event with seq > since, in order."""
        rows = await self.redis.xrange(self.keys.job_events(job_id), min=f"({since}-0", max="+", count=count)
        return [Event.model_validate_json(fields[b"e"]) for _, fields in rows]

    async def last_seq(self, job_id: str) -> int:
        return int(await self.redis.get(self.keys.job_seq(job_id)) or 0)

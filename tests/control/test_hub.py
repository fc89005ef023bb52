"""The hub's fan-out on a real Redis: live events go straight to a sink while the reader is caught up,
and through the queue (with replay) otherwise, and a follower still sees every seq once, in order."""

from __future__ import annotations

import asyncio
import json
import random

from redis.asyncio import Redis

from common.events import EventLog
from common.keys import Keys
from common.settings import Settings
from control.hub import Hub


async def test_sink_and_queue_together_keep_every_seq_in_order(settings: Settings, redis: Redis) -> None:
    keys = Keys(settings.key_prefix)
    events = EventLog(redis, keys, settings.event_maxlen)
    hub = Hub(redis, keys, events)
    runner = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.connected.wait(), 5)
    await events.emit("job1", "log", message="before anyone follows")  # seq 1: reaches the reader by replay
    rng = random.Random(7)
    seen: list[int] = []
    direct = refused = 0

    def sink(frame: bytes) -> bool:  # a socket that is sometimes busy (its write buffer full)
        nonlocal direct, refused
        if rng.random() < 0.3:
            refused += 1
            return False
        direct += 1
        seen.append(json.loads(frame[frame.index(b"{") :])["event"]["seq"])  # after the frame header
        return True

    async def read() -> None:
        async for event in hub.follow("job1", 0, sink):
            seen.append(event["seq"])

    reader = asyncio.create_task(read())
    for n in range(200):
        await events.emit("job1", "log", message=f"{n}")
        if n % 7 == 0:
            await asyncio.sleep(0)  # sometimes let the reader catch up, sometimes not
    await events.emit("job1", "status", status="completed")
    await asyncio.wait_for(reader, 10)
    runner.cancel()
    assert seen == list(range(1, 203))
    assert direct > 50 and refused > 10  # both paths carried events
    assert not hub._followers  # the follower is gone once the final event went out

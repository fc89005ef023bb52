"""WebSocket/SSE fan-out: ONE Redis Pub/Sub subscription per process, per-job queues, gap-free replay."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncGenerator, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, TimeoutError

from common.events import EventLog
from common.jobs import FINAL_STATUSES
from common.keys import Keys
from control import metrics
from control.wsserver import prepare

log = structlog.get_logger(__name__)

#: Put in a follower's queue when live events may have been missed (overflow, Redis reconnect).
RESYNC: dict[str, Any] = {"resync": True}
#: Put in a follower's queue when the hub delivered the final event itself: the reader ends.
END: dict[str, Any] = {"end": True}
FRAME_CACHE = 4096  #: encoded frames kept for fan-out

#: A direct receiver of live events: prepared frame bytes -> taken now?
Sink = Callable[[bytes], bool]


class Follower:
    """One subscriber of one job: a bounded queue of raw event dicts, and an optional sink that takes
    live events straight from the hub's dispatch loop while the reader is caught up (no task switch)."""

    def __init__(self, job_id: str, size: int, sink: Sink | None = None) -> None:
        self.job_id, self.sink = job_id, sink
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.overflowed = False
        self.last = 0  #: the last seq this follower has had
        self.parked = False  #: the reader waits on an empty queue with `last` up to date

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the reader fills the gap from the replay stream


class Hub:
    def __init__(self, redis: Redis, keys: Keys, events: EventLog, queue_size: int = 2000) -> None:
        self.redis, self.keys, self.events, self.queue_size = redis, keys, events, queue_size
        self._followers: dict[str, set[Follower]] = defaultdict(set)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # see every event (webhooks)
        self.connected = asyncio.Event()
        self._frames: OrderedDict[tuple[str, int], tuple[str, bytes]] = OrderedDict()

    def frame(self, event: dict[str, Any]) -> tuple[str, bytes]:
        """The `event` WebSocket message of an event as text and as a prepared frame, encoded once
        however many sockets follow the job."""
        key = (event["jobId"], event["seq"])
        frame = self._frames.get(key)
        if frame is None:
            body = json.dumps(event, separators=(",", ":"))
            text = f'{{"type":"event","jobId":{json.dumps(event["jobId"])},"event":{body}}}'
            frame = self._frames[key] = (text, prepare(text))
            if len(self._frames) > FRAME_CACHE:
                self._frames.popitem(last=False)
        return frame

    def open(self, job_id: str, sink: Sink | None = None) -> Follower:
        f = Follower(job_id, self.queue_size, sink)
        self._followers[job_id].add(f)
        return f

    def close(self, f: Follower) -> None:
        subs = self._followers.get(f.job_id)
        if subs is not None:
            subs.discard(f)
            if not subs:
                del self._followers[f.job_id]

    async def run(self) -> None:
        """Listen on the events channel forever; after a Redis outage every follower resyncs."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events_channel())
                self.connected.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["data"])
            except Exception as e:  # Redis lost, or anything else: never a silent end of every live feed
                self.connected.clear()
                if isinstance(e, ConnectionError | TimeoutError | OSError):
                    log.warning("hub lost redis; resubscribing", error=repr(e), backoff=backoff)
                else:
                    log.exception("hub failed; resubscribing", backoff=backoff)
                for subs in self._followers.values():
                    for f in subs:
                        f.offer(RESYNC)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await pubsub.aclose()

    def _dispatch(self, raw: bytes) -> None:
        event = json.loads(raw)
        seq, sent = event.get("seq", 0), 0
        final = event.get("kind") == "status" and event.get("status") in FINAL_STATUSES
        followers = self._followers.get(event.get("jobId", ""), ())
        frame = self.frame(event)[1] if followers else b""  # encoded once for every socket
        for f in followers:
            # Direct only when it keeps the order: the reader is idle and this is the very next seq.
            if f.parked and f.sink is not None and seq == f.last + 1 and f.sink(frame):
                f.last, sent = seq, sent + 1
                if final:
                    f.parked = False
                    f.offer(END)
            else:
                f.offer(event)
        if sent:
            metrics.WS_EVENTS_OUT.inc(sent)
            metrics.EVENT_DELIVERY.observe(max(0.0, time.time() - event["ts"]))
        for listener in self.listeners:
            listener(event)

    async def follow(self, job_id: str, since: int, sink: Sink | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Every event of the job with seq > since, in order and without gaps, until its final status.
        With a sink, live events that arrive while the reader is caught up go to the sink instead."""
        f = self.open(job_id, sink)
        last = since
        try:
            # Replay only once the hub listens: an event published before it subscribed (control just
            # started, or Redis came back) would be in neither the replay nor the live feed.
            await self.connected.wait()
            for ev in await self.events.replay(job_id, since):
                yield _wire(ev)
                last = ev.seq
                if ev.kind == "status" and ev.status in FINAL_STATUSES:
                    return
            while True:
                f.last, f.parked = last, True
                item = await f.queue.get()
                f.parked, last = False, f.last  # the sink may have moved it on
                if item is END:
                    return
                if item is RESYNC or f.overflowed or item.get("seq", 0) > last + 1:
                    f.overflowed = False
                    await self.connected.wait()
                    for ev in await self.events.replay(job_id, last):
                        yield _wire(ev)
                        last = ev.seq
                        if ev.kind == "status" and ev.status in FINAL_STATUSES:
                            return
                    continue
                if item["seq"] <= last:
                    continue
                yield item
                last = item["seq"]
                if item.get("kind") == "status" and item.get("status") in FINAL_STATUSES:
                    return
        finally:
            self.close(f)


def _wire(ev: Any) -> dict[str, Any]:
    return dict(ev.model_dump(by_alias=True, exclude_none=True, mode="json"))

"""Event publish -> WebSocket receive latency with 100 and 1,000 sockets on one control process.

Target: p99 <= 10 ms at 1,000 sockets. Two shapes: every socket follows its own job (one delivery per
event), and every socket follows the same job (one event fans out to all sockets).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import websockets

from bench.stack import API_KEY, stack
from common.bridge import connect
from common.events import EventLog
from common.jobs import JobStore
from common.keys import Keys
from common.models.graph_schema import GraphDocument
from common.settings import Settings
from control.auth import owner_of

GRAPH = GraphDocument.model_validate(
    {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "bench",
        "nodes": [{"id": "a", "service": "prepare_assets", "plane": "control"}],
        "edges": [],
    }
)
ROUNDS = 50  #: event rounds, 100 ms apart
PER_ROUND = 50  #: jobs that emit one event per round (all of them when fewer)


async def measure(url: str, redis_url: str, sockets: int, shared: bool) -> list[float]:
    s = Settings(redis_url=redis_url)
    redis = connect(s)
    keys = Keys(s.key_prefix)
    events = EventLog(redis, keys, s.event_maxlen)
    store = JobStore(redis, keys, events, s.job_ttl_seconds)
    jobs = [(await store.create(GRAPH, owner=owner_of(API_KEY))).job_id for _ in range(1 if shared else sockets)]
    latencies: list[float] = []
    conns = []
    for i in range(sockets):
        ws = await websockets.connect(url.replace("http://", "ws://") + f"/ws?token={API_KEY}", max_queue=None)
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "jobId": jobs[i % len(jobs)]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        conns.append(ws)
    emitters = min(len(jobs), PER_ROUND)
    per_job = sockets // len(jobs)
    expected = ROUNDS * emitters * per_job

    async def reader(ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            now = time.time()
            msg = json.loads(raw)
            if msg["type"] == "event" and msg["event"]["kind"] == "log":
                latencies.append(now - msg["event"]["ts"])

    readers = [asyncio.create_task(reader(ws)) for ws in conns]
    for n in range(ROUNDS):
        for k in range(emitters):
            await events.emit(jobs[(n * emitters + k) % len(jobs)], "log", message=f"tick {n}")
        await asyncio.sleep(0.1)
    async with asyncio.timeout(60):
        while len(latencies) < expected:
            await asyncio.sleep(0.05)
    for r in readers:
        r.cancel()
    for ws in conns:
        await ws.close()
    await redis.aclose()
    return latencies


def run() -> list[tuple[str, str, str]]:
    rows = []
    with stack() as st:
        url = st.start("control")
        for sockets in (100, 1000):
            for shared in (False, True):
                lat = asyncio.run(measure(url, st.env["BIPLANE_REDIS_URL"], sockets, shared))
                lat.sort()
                p50 = statistics.median(lat) * 1000
                p99 = lat[int(0.99 * (len(lat) - 1))] * 1000
                shape = "all on one job" if shared else "one job each"
                target = f"target p99 <= 10 ms: {'met' if p99 <= 10 else 'MISSED'}" if sockets == 1000 else ""
                rows.append(
                    (
                        f"WS publish->receive, {sockets} sockets, {shape}",
                        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} deliveries)",
                        target,
                    )
                )
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

"""Redis comes back empty (no persistence) or loses its streams under running planes: they recover by
themselves, say so in the log, `/ready` reports an executor that is not consuming, submissions during the
outage answer 503 with Retry-After (a WebSocket subscription is closed with 1013), and a job submitted
afterwards completes."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
import websockets

from common.settings import Settings
from infra.dev.devstack import RedisServer
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.processes import Plane

#: Kill/restart-empty cycles; REDIS_RESTARTS raises it for `make soak`.
RESTARTS = int(os.environ.get("REDIS_RESTARTS", "1"))


def _ready(plane: Plane) -> tuple[int, dict]:
    try:
        r = httpx.get(f"{plane.url}/ready", timeout=5)
    except httpx.TransportError:
        return 0, {}
    return r.status_code, r.json().get("checks", {})


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_redis_restarted_empty_planes_recover(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()  # no AOF, no RDB: it comes back empty
    try:
        s = settings.model_copy(update={"redis_url": redis.url, "rate_limit_per_minute": 1000})
        control = plane_factory("control", s)
        worker = plane_factory("worker", s)
        api = client(control.url)
        before = api.post("/api/jobs", json=graph_doc({"steps": 2}, publish=False)).json()["jobId"]
        assert (await wait_all_final(api, [before], 60))[before]["status"] == "completed"

        for _ in range(RESTARTS):
            assert redis.proc is not None
            redis.proc.kill()  # SIGKILL: nothing is written
            redis.proc.wait()
            refused = api.post("/api/jobs", json=graph_doc({"steps": 2}))
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "unavailable" and int(refused.headers["Retry-After"]) > 0
            async with websockets.connect(control.url.replace("http://", "ws://") + "/ws?token=test-key-1") as ws:
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(json.dumps({"action": "subscribe", "jobId": before}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    async with asyncio.timeout(60):
                        while True:
                            assert json.loads(await ws.recv())["type"] == "heartbeat"
                received = closed.value.rcvd  # a close frame, not a dropped socket
                assert received is not None and received.code == 1013, "try again later"
            for plane in (control, worker):  # not ready, and the executor says it is not consuming
                await _until(lambda p=plane: _ready(p)[1].get("executor") is False, 60, "executor not consuming")
                assert _ready(plane)[0] == 503

            redis.start()  # same port, empty
            assert redis_sync.Redis.from_url(redis.url).dbsize() == 0
            for plane in (control, worker):
                await _until(lambda p=plane: _ready(p)[0] == 200, 60, f"{plane.module} ready again")
            after = [api.post("/api/jobs", json=graph_doc({"steps": 2})).json()["jobId"] for _ in range(3)]
            records = await wait_all_final(api, after, 60)
            assert {r["status"] for r in records.values()} == {"completed"}, records
        for plane in (control, worker):
            log = plane.log.read_text()
            assert "executor not consuming" in log and "executor consuming again" in log, plane.module
        assert control.proc and control.proc.poll() is None and worker.proc and worker.proc.poll() is None
    finally:
        redis.stop()


async def test_streams_flushed_under_live_connections_nogroup(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    """The connection never drops, the streams and groups just vanish: blocked reads are answered UNBLOCKED,
    the next ones NOGROUP (a ResponseError, which used to end the executor's loop without a word)."""
    control = plane_factory("control", settings.model_copy(update={"rate_limit_per_minute": 1000}))
    worker = plane_factory("worker", settings)
    api = client(control.url)
    r = redis_sync.Redis.from_url(settings.redis_url)
    first = api.post("/api/jobs", json=graph_doc({"steps": 2})).json()["jobId"]
    assert (await wait_all_final(api, [first], 60))[first]["status"] == "completed"
    for key in r.scan_iter(f"{settings.key_prefix}:*"):
        r.delete(key)
    after = [api.post("/api/jobs", json=graph_doc({"steps": 2})).json()["jobId"] for _ in range(3)]
    records = await wait_all_final(api, after, 60)
    assert {rec["status"] for rec in records.values()} == {"completed"}, records
    for plane in (control, worker):
        log = plane.log.read_text()
        assert "executor not consuming: redis failed" in log and "ResponseError" in log, plane.module
        assert "executor consuming again" in log, plane.module
        assert _ready(plane)[0] == 200

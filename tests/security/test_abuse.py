"""Abuse of uploads, the WebSocket and ownership: clear 4xx / error frames, nothing stored, process healthy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import websockets
from redis.asyncio import Redis

from common.keys import Keys
from common.settings import Settings
from common.storage import Storage
from tests.support.api import client, graph_doc
from tests.support.media import bomb_png, png
from tests.support.processes import Plane


async def test_upload_abuse_is_rejected_and_stores_nothing(
    control: Plane, storage: Storage, redis: Redis, settings: Settings
) -> None:
    api = client(control.url)
    ok = ("images", ("ok.png", png(), "image/png"))
    cases = {
        "bomb": ([("images", ("bomb.png", bomb_png(60_000), "image/png"))], {"prompt": "p"}, 413),
        "wrong type": ([("images", ("x.png", b"%PDF-1.4 not an image", "image/png"))], {"prompt": "p"}, 415),
        "gif": ([("images", ("x.gif", b"GIF89a" + b"\0" * 20, "image/gif"))], {"prompt": "p"}, 415),
        "traversal": ([("images", ("../../etc/passwd.png", png(), "image/png"))], {"prompt": "p"}, 422),
        "no prompt": ([ok], {}, 422),
        "no images": ([], {"prompt": "p"}, 422),
        "long prompt": ([ok], {"prompt": "x" * 1001}, 422),
        "bad workflow": ([ok], {"prompt": "p", "workflow": "rm -rf"}, 422),
        "studio without clips": ([ok], {"prompt": "p", "workflow": "studio", "narration": "n"}, 422),
        "too many": ([ok] * 51, {"prompt": "p"}, 422),
    }
    for name, (files, data, status) in cases.items():
        r = api.post("/api/train", data=data, files=files or None)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert isinstance(r.json()["code"], str) and r.json()["message"], name

    def gigabyte() -> Iterator[bytes]:  # chunked, no Content-Length: counted as it arrives
        head = b'--zz\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
        yield head
        for _ in range(1024):
            yield b"\0" * (1024 * 1024)

    r = api.post("/api/train", content=gigabyte(), headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413
    assert list(storage.list("jobs/")) == []
    assert await redis.zcard(Keys(settings.key_prefix).jobs_index()) == 0
    assert httpx.get(f"{control.url}/health").status_code == 200


async def test_websocket_abuse(control: Plane, settings: Settings) -> None:
    api = client(control.url)
    job_id = api.post("/api/jobs", json=graph_doc()).json()["jobId"]
    base = control.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(f"{base}?token=wrong") as ws:
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4401
    async with websockets.connect(f"{base}?token=test-key-1", max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send("[" * 100_000)
        assert json.loads(await ws.recv())["code"] == "too_large"
        await ws.send("[" * 1000)
        assert json.loads(await ws.recv())["code"] == "invalid_json"
        await ws.send(b"\xff\xfe binary junk")
        assert json.loads(await ws.recv())["code"] in ("invalid_json", "invalid_message")
        for _ in range(2000):  # thousands of subscriptions to one job: each replaces the last
            await ws.send(json.dumps({"action": "subscribe", "jobId": job_id}))
        for i in range(150):  # distinct ids beyond the per-socket limit
            await ws.send(json.dumps({"action": "subscribe", "jobId": f"{i:032x}"}))
        codes: list[str] = []
        async with asyncio.timeout(30):
            while len(codes) < 150:
                msg = json.loads(await ws.recv())
                if msg["type"] == "error":
                    codes.append(msg["code"])
        assert set(codes) == {"not_found"}, "unknown ids are refused before any limit"
        await ws.send(json.dumps({"action": "ping"}))
        async with asyncio.timeout(10):
            while json.loads(await ws.recv())["type"] != "pong":
                pass
    huge = "x" * (17 * 1024 * 1024)  # beyond the server's frame limit: closed, process fine
    async with websockets.connect(f"{base}?token=test-key-1", max_size=None) as ws:
        await ws.recv()
        try:
            await ws.send(huge)
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code in (1009, 1011)
    assert httpx.get(f"{control.url}/health").status_code == 200


async def test_subscription_limit_per_socket(settings: Settings, plane_factory: Callable[..., Plane]) -> None:
    control = plane_factory(
        "control", settings.model_copy(update={"ws_max_subscriptions": 3, "rate_limit_per_minute": 100})
    )
    api = client(control.url)
    jobs = [api.post("/api/jobs", json=graph_doc()).json()["jobId"] for _ in range(5)]
    async with websockets.connect(control.url.replace("http://", "ws://") + "/ws?token=test-key-1") as ws:
        await ws.recv()
        for j in jobs:
            await ws.send(json.dumps({"action": "subscribe", "jobId": j}))
        answers = []
        async with asyncio.timeout(10):
            while len(answers) < 5:
                msg = json.loads(await ws.recv())
                if msg["type"] in ("subscribed", "error"):
                    answers.append(msg.get("code") or msg["type"])
    assert answers == ["subscribed"] * 3 + ["too_many_subscriptions"] * 2


async def test_another_key_sees_nothing(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("worker", settings)
    mine, theirs = client(control.url), client(control.url, "test-key-2")
    job_id = mine.post("/api/jobs", json=graph_doc({"steps": 2})).json()["jobId"]
    with mine.stream("GET", f"/api/jobs/{job_id}/events") as resp:
        for line in resp.iter_lines():
            if (
                line.startswith("data:")
                and json.loads(line[5:]).get("kind") == "status"
                and json.loads(line[5:]).get("status") == "completed"
            ):
                break
    arts = mine.get(f"/api/jobs/{job_id}/artifacts").json()["items"]
    assert arts, "the owner sees its artifacts"
    for path in (
        f"/api/jobs/{job_id}",
        f"/api/jobs/{job_id}/artifacts",
        f"/api/jobs/{job_id}/events",
        f"/api/jobs/{job_id}/artifacts/manifest.json",
        f"/api/jobs/{job_id}/artifacts/../{job_id}",
    ):
        r = theirs.get(path)
        assert r.status_code == 404 and r.json()["code"] == "not_found", path
        assert not {"graph", "sha256", "url", "seq"} & set(r.json()), path
    assert theirs.post(f"/api/jobs/{job_id}/cancel").status_code == 404
    assert theirs.get("/api/jobs").json()["items"] == []
    render = theirs.post("/api/render", json={"prompt": "x", "lora": {"job": job_id}})
    assert render.status_code == 404
    steal = graph_doc()
    steal["context"] = {"images": [f"jobs/{job_id}/w/result.txt"]}
    assert theirs.post("/api/jobs", json=steal).status_code == 404
    async with websockets.connect(control.url.replace("http://", "ws://") + "/ws?token=test-key-2") as ws:
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "jobId": job_id, "since": 0}))
        msg = json.loads(await ws.recv())
        assert msg["type"] == "error" and msg["code"] == "not_found"
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong", "no event of that job ever arrives"

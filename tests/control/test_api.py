"""The control plane's REST, WebSocket and SSE surface against a real process, Redis and S3."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from standardwebhooks import Webhook

from common.settings import Settings
from common.storage import Storage
from control.webhooks import signing_secret
from infra.dev.devstack import free_port
from tests.support.api import client, graph_doc, ws_follow
from tests.support.jobs import Harness
from tests.support.media import png
from tests.support.processes import Plane


async def test_graph_job_runs_and_ws_replays_by_seq(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("worker", settings)
    api = client(control.url)
    resp = api.post("/api/jobs", json=graph_doc({"steps": 6, "step_seconds": 0.05}))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    job_id = body["jobId"]
    assert body["status"] == "queued" and body["links"]["self"] == f"/api/jobs/{job_id}"

    subscribed, events = await ws_follow(control.url, job_id, since=0)
    assert subscribed["job"]["jobId"] == job_id
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert events[-1]["kind"] == "status" and events[-1]["status"] == "completed"
    assert {"status", "node", "progress"} <= {e["kind"] for e in events}

    k = len(events) // 2
    _, first = await ws_follow(control.url, job_id, since=0, stop_after=k)
    _, rest = await ws_follow(control.url, job_id, since=first[-1]["seq"])
    assert [e["seq"] for e in first + rest] == seqs, "reconnect with since=k gives exactly the events after k"

    record = api.get(f"/api/jobs/{job_id}").json()
    assert record["status"] == "completed" and record["progress"] == 1.0
    assert [n["status"] for n in record["graph"]["nodes"]] == ["completed"] * 3
    arts = api.get(f"/api/jobs/{job_id}/artifacts").json()["items"]
    manifest = next(a for a in arts if a["name"] == "manifest.json")
    assert httpx.get(manifest["url"]).json()["jobId"] == job_id
    listed = api.get("/api/jobs", params={"status": "completed"}).json()["items"]
    assert [j["jobId"] for j in listed] == [job_id]


def test_sse_streams_snapshot_then_events(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("worker", settings)
    api = client(control.url)
    job_id = api.post("/api/jobs", json=graph_doc({"steps": 3}, publish=False)).json()["jobId"]
    kinds, ids = [], []
    with api.stream("GET", f"/api/jobs/{job_id}/events", params={"since": 0}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kinds.append(line[6:].strip())
            elif line.startswith("id:"):
                ids.append(int(line[3:]))
    assert kinds[0] == "snapshot" and kinds[-1] == "status"
    assert ids == list(range(1, len(ids) + 1))


def test_rejections_leave_nothing_behind(
    settings: Settings, plane_factory: Callable[..., Plane], storage: Storage
) -> None:
    small = settings.model_copy(update={"max_upload_file_bytes": 50_000, "rate_limit_per_minute": 4})
    control = plane_factory("control", small)
    api, other = client(control.url), client(control.url, "test-key-2")

    assert client(control.url, None).get("/api/jobs").status_code == 401
    assert client(control.url, "wrong").get("/api/jobs").json()["code"] == "unauthorized"

    big = png((400, 400)) + b"\0" * 60_000
    r = api.post("/api/train", data={"prompt": "p"}, files=[("images", ("a.png", big, "image/png"))])
    assert (r.status_code, r.json()["code"]) == (413, "too_large")
    r = api.post("/api/train", data={"prompt": "p"}, files=[("images", ("a.png", b"just text", "image/png"))])
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type") and "a.png" in r.json()["message"]
    r = api.post(
        "/api/train",
        data={"prompt": "p", "options": '{"steps": -3}'},
        files=[("images", ("a.png", png(), "image/png"))],
    )
    assert (r.status_code, r.json()["pointer"]) == (422, "/options/steps")

    cyclic = graph_doc()
    cyclic["edges"].append({"from": "publish", "to": "prep"})
    r = api.post("/api/jobs", json=cyclic)
    assert (r.status_code, r.json()["code"], r.json()["pointer"]) == (422, "invalid_graph", "/edges")
    unknown = graph_doc()
    unknown["nodes"][1]["service"] = "no.such"
    assert api.post("/api/jobs", json=unknown).json()["pointer"] == "/nodes/1/service"
    bad = graph_doc({"steps": "many"})
    assert api.post("/api/jobs", json=bad).json()["pointer"] == "/nodes/1/params/steps"
    wrong_plane = graph_doc()
    wrong_plane["nodes"][1]["plane"] = "control"
    assert api.post("/api/jobs", json=wrong_plane).json()["pointer"] == "/nodes/1/plane"

    nothing = [r for r in storage.list("jobs/")]
    assert nothing == [], "rejected requests stored nothing"

    job_id = api.post("/api/jobs", json=graph_doc()).json()["jobId"]
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/artifacts", f"/api/jobs/{job_id}/events"):
        r = other.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), path
    assert other.post(f"/api/jobs/{job_id}/cancel").status_code == 404
    assert other.get("/api/jobs").json()["items"] == []

    codes = [api.post("/api/jobs", json=graph_doc()).status_code for _ in range(6)]
    assert 429 in codes
    limited = api.post("/api/jobs", json=graph_doc())
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    accepted = 1 + codes.count(202)
    assert len(api.get("/api/jobs", params={"limit": 200}).json()["items"]) == accepted


async def test_bad_upload_body_and_no_record(settings: Settings, control: Plane, redis: Redis) -> None:
    api = client(control.url)
    r = api.post("/api/train", content=b"x" * 100, headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code in (400, 422) and "code" in r.json()
    # A client announcing 1 GB is turned away before it sends a byte of it.
    port = int(control.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/train HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key-1\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 1000000000\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    answer = raw.decode()
    assert answer.startswith("HTTP/1.1 413") and '"too_large"' in answer
    h = Harness(redis, settings)
    assert await redis.zcard(h.keys.jobs_index()) == 0


def test_idempotent_submit(control: Plane) -> None:
    api = client(control.url)
    files = [("images", ("a.png", png(), "image/png")), ("images", ("b.png", png(color=(1, 2, 3)), "image/png"))]
    first = api.post("/api/train", data={"prompt": "a cat"}, files=files, headers={"Idempotency-Key": "k1"})
    again = api.post("/api/train", data={"prompt": "a cat"}, files=files, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"]
    other = api.post("/api/train", data={"prompt": "a dog"}, files=files, headers={"Idempotency-Key": "k1"})
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_mismatch")
    assert len(api.get("/api/jobs").json()["items"]) == 1


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    got = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if b'"job.completed"' in body:
            type(self).got.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    _Receiver.received, _Receiver.got = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_webhook_delivers_signed_completed(
    settings: Settings, receiver: str, plane_factory: Callable[..., Plane]
) -> None:
    control = plane_factory("control", settings.model_copy(update={"webhook_allow": "127.0.0.1"}))
    plane_factory("worker", settings)
    api = client(control.url)
    job_id = api.post("/api/jobs", params={"webhook": receiver}, json=graph_doc({"steps": 2})).json()["jobId"]
    assert _Receiver.got.wait(60), "no completed delivery"
    verifier = Webhook(signing_secret(settings))
    types = []
    for headers, body in _Receiver.received:
        payload = verifier.verify(body, headers)  # raises on a bad signature
        assert payload["data"]["jobId"] == job_id
        types.append(payload["type"])
    assert types.count("job.completed") == 1 and "job.started" in types
    headers, body = _Receiver.received[-1]
    with pytest.raises(Exception, match="(?i)signature"):
        verifier.verify(body.replace(b"completed", b"c0mpleted"), headers)


def test_capabilities_without_worker_is_fast_and_says_so(control: Plane) -> None:
    api = client(control.url)
    api.get("/api/capabilities")  # warm the connection
    timings = []
    for _ in range(5):  # best of five: the machine may be busy with other tests
        started = time.perf_counter()
        r = api.get("/api/capabilities")
        timings.append(time.perf_counter() - started)
    elapsed = min(timings)
    body = r.json()
    assert r.status_code == 200 and body["workersAlive"] == 0 and "no worker" in body["warning"]
    assert elapsed < 0.1, f"capabilities took {elapsed:.3f}s"
    services = {s["service"]: s for s in body["services"]}
    assert (
        services["train_lora"]["plane"] == "data" and "learningRate" in services["train_lora"]["params"]["properties"]
    )
    assert services["prepare_assets"]["plane"] == "control"
    assert api.get("/api/workflows").json()["items"][0]["name"] == "lora"


async def test_ws_protocol_errors_keep_the_connection(settings: Settings, control: Plane) -> None:
    base = control.url.replace("http://", "ws://")
    async with websockets.connect(f"{base}/ws") as ws:  # no token: first frame must authenticate
        await ws.send(json.dumps({"action": "subscribe", "jobId": "x"}))
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4401
    async with websockets.connect(f"{base}/ws") as ws:
        await ws.send(json.dumps({"action": "auth", "token": "test-key-1"}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["code"] == "invalid_json"
        await ws.send(json.dumps({"action": "dance"}))
        assert json.loads(await ws.recv())["code"] == "invalid_message"
        await ws.send("x" * (settings.ws_max_message_bytes + 1))
        assert json.loads(await ws.recv())["code"] == "too_large"
        await ws.send(json.dumps({"action": "subscribe", "jobId": "nope"}))
        assert json.loads(await ws.recv())["code"] == "not_found"
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_lora_job_through_api_train_with_a_real_worker(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    """POST /api/train with three PNGs: prepare (control) -> train_lora (worker process) -> publish (control)."""
    from tests.support.ui import LORA_OPTIONS

    plane_factory("worker", settings)
    api = client(control.url)
    files = [("images", (f"{i}.png", png(color=(60 * i, 100, 200)), "image/png")) for i in range(3)]
    r = api.post("/api/train", data={"prompt": "a red square", "options": json.dumps(LORA_OPTIONS)}, files=files)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    _, events = await ws_follow(control.url, job_id, since=0)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "status" and events[-1]["status"] == "completed"
    kinds = {(e["kind"], e.get("nodeId")) for e in events}
    assert {("node", "prepare"), ("node", "train_lora"), ("node", "publish"), ("progress", "train_lora")} <= kinds
    record = api.get(f"/api/jobs/{job_id}").json()
    assert [(n["id"], n["plane"], n["status"]) for n in record["graph"]["nodes"]] == [
        ("prepare", "control", "completed"),
        ("train_lora", "data", "completed"),
        ("publish", "control", "completed"),
    ]
    names = {a["name"] for a in api.get(f"/api/jobs/{job_id}/artifacts").json()["items"]}
    assert "train_lora/pytorch_lora_weights.safetensors" in names and "prepare/images/002.png" in names

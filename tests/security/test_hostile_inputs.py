"""Each hostile id and body against each route: a 4xx JSON error (or a WS `error` frame on an open socket), never a
500 or a dropped connection, and "another owner's job" answers exactly like "no such job"."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from urllib.parse import quote

import httpx
import websockets

from tests.support.api import client, graph_doc
from tests.support.media import png, wav
from tests.support.processes import Plane

JOB_ROUTES = (
    ("GET", "/api/jobs/{}"),
    ("GET", "/api/jobs/{}/events"),
    ("GET", "/api/jobs/{}/artifacts"),
    ("GET", "/api/jobs/{}/artifacts/w/result.txt"),
    ("POST", "/api/jobs/{}/cancel"),
    ("GET", "/api/status/{}"),  # the original stack's status route (an alias)
)


#: Random hostile ids per route on top of the fixed ones; HOSTILE_EXAMPLES raises it for `make soak`.
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "10"))
_ALPHABET = "aZ09_-:*?%\\ \0\n\r\t.{}[]\"'ü€\u202e"  # no "/": it would route elsewhere


def hostile_ids(theirs: str, extra: int = 0, seed: int = 0) -> list[str]:
    """Ids that used to name other Redis keys of a job (WRONGTYPE: 500), or no job at all; plus `extra` random
    ones (the owner's id with a random tail, or random text)."""
    suffixes = (":events", ":seq", ":lease", ":cancel", ":handoff:data:x", ":webhook:completed", "x" * 60)
    ids = [theirs + s for s in suffixes] + ["a b", "a\0b", "*", "?", "ü" * 10, "a:b", "-" * 65, "%", "\\", " "]
    rnd = random.Random(seed)
    for _ in range(extra):
        tail = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(1, 80)))
        ids.append(theirs + tail if rnd.random() < 0.5 else tail)
    return [i for i in ids if i.strip(".")]  # "." and ".." are path segments, not ids


def deep(n: int) -> str:
    return "[" * n + "]" * n


def _assert_json_4xx(r: httpx.Response, what: str) -> None:
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body["code"], str) and isinstance(body["message"], str), (what, body)


def _answer(r: httpx.Response, job_id: str) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["code"], body["message"].replace(job_id[:64], "<id>")


def test_hostile_ids_on_every_job_route(control: Plane) -> None:
    mine, theirs = client(control.url), client(control.url, "test-key-2")
    b_job = theirs.post("/api/jobs", json=graph_doc()).json()["jobId"]
    missing = uuid.uuid4().hex
    for n, (method, route) in enumerate(JOB_ROUTES):
        r_theirs = mine.request(method, route.format(b_job))
        r_missing = mine.request(method, route.format(missing))
        assert r_theirs.status_code == 404, (route, r_theirs.text)
        assert _answer(r_theirs, b_job) == _answer(r_missing, missing), route
        assert dict(r_theirs.headers).keys() == dict(r_missing.headers).keys(), route
        for job_id in hostile_ids(b_job, EXAMPLES, seed=n):
            r = mine.request(method, route.format(quote(job_id, safe="")))
            _assert_json_4xx(r, f"{method} {route} {job_id!r}")
            assert (r.status_code, r.json()["code"]) == (404, "not_found"), (route, job_id, r.text)
    assert theirs.get(f"/api/jobs/{b_job}").json()["status"] in ("queued", "running"), "the owner's job is untouched"
    assert httpx.get(f"{control.url}/health").status_code == 200


async def test_hostile_ids_over_the_websocket(control: Plane) -> None:
    b_job = client(control.url, "test-key-2").post("/api/jobs", json=graph_doc()).json()["jobId"]
    missing = uuid.uuid4().hex
    async with websockets.connect(control.url.replace("http://", "ws://") + "/ws?token=test-key-1") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"

        async def subscribe(job_id: str) -> dict:
            await ws.send(json.dumps({"action": "subscribe", "jobId": job_id}))
            async with asyncio.timeout(10):
                while (msg := json.loads(await ws.recv()))["type"] == "heartbeat":
                    pass
            return msg

        ids = [b_job, missing, *hostile_ids(b_job, EXAMPLES, seed=99)]
        frames = {job_id: await subscribe(job_id) for job_id in ids}
        for job_id, msg in frames.items():  # longer than the schema allows: invalid_message; else not_found
            assert msg["type"] == "error" and msg["code"] in ("not_found", "invalid_message"), (job_id, msg)
        ghost = {**frames[missing], "jobId": "<id>", "message": frames[missing]["message"].replace(missing, "<id>")}
        assert {**frames[b_job], "jobId": "<id>", "message": frames[b_job]["message"].replace(b_job, "<id>")} == ghost
        await ws.send(json.dumps({"action": "ping"}))
        async with asyncio.timeout(10):
            while json.loads(await ws.recv())["type"] != "pong":
                pass
        assert ws.close_code is None, "the socket stayed open"


def test_hostile_bodies_on_every_submit_route(control: Plane) -> None:
    api = client(control.url)
    jobs, json_type = "/api/jobs", {"content-type": "application/json"}
    graph = graph_doc()
    deep_context = json.dumps({**graph, "context": {"x": "@"}}).replace('"@"', deep(10_000))
    shallow_enough = json.dumps({**graph, "context": {"x": "@"}}).replace('"@"', deep(150))
    image, clip = ("images", ("a.png", png(), "image/png")), ("clips", ("c.wav", wav(), "audio/wav"))
    studio = {"prompt": "p", "workflow": "studio", "narration": "n", "transcripts": '["t"]'}
    cases: dict[str, tuple[str, dict]] = {
        "jobs: context 10,000 deep": (jobs, {"content": deep_context, "headers": json_type}),
        "jobs: context 150 deep": (jobs, {"content": shallow_enough, "headers": json_type}),
        "jobs: body 10,000 deep": (jobs, {"content": deep(10_000), "headers": json_type}),
        "jobs: unclosed 100,000 deep": (jobs, {"content": "[" * 100_000, "headers": json_type}),
        "jobs: deep without content-type": (jobs, {"content": deep(10_000)}),
        "jobs: invalid utf-8": (jobs, {"content": b'{"a": "\xff\xfe"}', "headers": json_type}),
        "jobs: 1e999999": (jobs, {"content": '{"schemaVersion": 1e999999}', "headers": json_type}),
        "jobs: 10,000-digit int": (jobs, {"content": '{"a": ' + "9" * 10_000 + "}", "headers": json_type}),
        "jobs: NaN": (jobs, {"content": '{"a": NaN}', "headers": json_type}),
        "jobs: empty": (jobs, {"content": b"", "headers": json_type}),
        "jobs: null": (jobs, {"content": "null", "headers": json_type}),
        "jobs: string": (jobs, {"content": '"x"', "headers": json_type}),
        "jobs: text/plain": (jobs, {"content": json.dumps(graph), "headers": {"content-type": "text/plain"}}),
        "jobs: long idempotency key": (jobs, {"json": graph, "headers": {"Idempotency-Key": "k:" * 200}}),
        "jobs: webhook not a url": (jobs, {"json": graph, "params": {"webhook": "gopher://x"}}),
        "render: 10,000 deep": ("/api/render", {"content": deep(10_000), "headers": json_type}),
        "render: deep prompt object": (
            "/api/render",
            {"content": '{"prompt": ' + deep(5_000) + "}", "headers": json_type},
        ),
        "render: lora id with :events": ("/api/render", {"json": {"prompt": "x", "lora": {"job": "a:events"}}}),
        "train: options 10,000 deep": ("/api/train", {"data": {"prompt": "p", "options": deep(10_000)}}),
        "train: options 100 deep": ("/api/train", {"data": {"prompt": "p", "options": deep(100)}}),
        "train: options 1e999999": ("/api/train", {"data": {"prompt": "p", "options": '{"steps": 1e999999}'}}),
        "train: options digits": ("/api/train", {"data": {"prompt": "p", "options": "9" * 10_000}}),
        "train: videoOptions deep": (
            "/api/train",
            {"data": {**studio, "videoOptions": deep(10_000)}, "files": [image, clip]},
        ),
        "train: transcripts deep": (
            "/api/train",
            {"data": {**studio, "transcripts": deep(10_000)}, "files": [image, clip]},
        ),
        "train: transcripts not strings": (
            "/api/train",
            {"data": {**studio, "transcripts": '[{"a": 1}]'}, "files": [image, clip]},
        ),
        "voice: options deep": ("/api/voice", {"data": {"options": deep(10_000), "transcripts": "t"}, "files": [clip]}),
        "voice: transcripts deep": ("/api/voice", {"data": {"transcripts": deep(10_000)}, "files": [clip]}),
    }
    for name, (route, kwargs) in cases.items():
        _assert_json_4xx(api.post(route, **kwargs), name)
    assert api.get("/api/jobs").json()["items"] == [], "nothing was accepted"
    assert httpx.get(f"{control.url}/health").status_code == 200


async def test_hostile_values_on_my_own_job(control: Plane) -> None:
    """Values that are not ids but still reach Redis or S3: event seqs past 64 bits, impossible object names."""
    mine = client(control.url)
    own = mine.post("/api/jobs", json=graph_doc()).json()["jobId"]
    for since in (2**63, 2**64, 10**30):
        _assert_json_4xx(mine.get(f"/api/jobs/{own}/events", params={"since": since}), f"since={since}")
    with mine.stream("GET", f"/api/jobs/{own}/events", headers={"Last-Event-ID": "9" * 20}) as r:
        assert r.status_code == 200, "an unusable Last-Event-ID is ignored"
        assert next(r.iter_lines()).startswith("event: snapshot")
    for name in ("a" * 2000, "ü" * 600, "x\0y", "x\ny", "x/../../y", "\\", "%", "inputs/images/000.png"):
        r = mine.get(f"/api/jobs/{own}/artifacts/{quote(name, safe='/')}")
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), (name, r.status_code, r.text[:200])
    async with websockets.connect(control.url.replace("http://", "ws://") + "/ws?token=test-key-1") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for since in (2**63, 2**64, 10**30):
            await ws.send(json.dumps({"action": "subscribe", "jobId": own, "since": since}))
            async with asyncio.timeout(10):
                while (msg := json.loads(await ws.recv()))["type"] == "heartbeat":
                    pass
            assert msg["type"] == "error" and msg["code"] in ("invalid_message", "not_found"), (since, msg)
        await ws.send(json.dumps({"action": "subscribe", "jobId": own, "since": 0}))
        async with asyncio.timeout(10):
            while (msg := json.loads(await ws.recv()))["type"] != "subscribed":
                pass
    assert httpx.get(f"{control.url}/health").status_code == 200

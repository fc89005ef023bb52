"""Ownership of referenced data: key A may not make a job read key B's objects through any param of any service
or the graph context, at submission or (for a record that got past it) in the task. "Not yours" answers
exactly like "does not exist"."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from common.bridge import Bridge
from common.events import EventLog
from common.executor import submit
from common.jobs import JobStore
from common.keys import Keys
from common.settings import Settings
from control.auth import owner_of
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.jobs import graph
from tests.support.media import png, wav
from tests.support.processes import Plane

MODULES = "tests.support.tasks,tests.security.plugin"


def render_graph(params: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reported attack's shape: a render_video node whose params name another job."""
    return {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "custom",
        "context": context or {},
        "nodes": [{"id": "render", "service": "render_video", "plane": "data", "params": params}],
        "edges": [],
    }


def read_graph(source: Any = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {} if source is None else {"source": source}
    return {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "custom",
        "context": context or {},
        "nodes": [{"id": "read", "service": "test.read", "plane": "data", "params": params}],
        "edges": [],
    }


def _attacks(theirs: str, key: str) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """Every path that takes a reference, each a request by key A naming key B's job `theirs` (object `key`)."""
    studio_files = [("images", ("a.png", png(), "image/png")), ("clips", ("c.wav", wav(), "audio/wav"))]
    studio = {"prompt": "p", "workflow": "studio", "narration": "n", "transcripts": json.dumps(["hello"])}
    return {
        "jobs: render_video lora {job}": lambda a: a.post("/api/jobs", json=render_graph({"lora": {"job": theirs}})),
        "jobs: render_video voice {job}": lambda a: a.post("/api/jobs", json=render_graph({"voice": {"job": theirs}})),
        "jobs: render_video lora {key}": lambda a: a.post("/api/jobs", json=render_graph({"lora": {"key": key}})),
        "jobs: render_video voice {key}": lambda a: a.post("/api/jobs", json=render_graph({"voice": {"key": key}})),
        "jobs: plugin param key": lambda a: a.post("/api/jobs", json=read_graph(key)),
        "jobs: plugin param {job}": lambda a: a.post("/api/jobs", json=read_graph({"job": theirs})),
        "jobs: plugin param nested s3 url": lambda a: a.post(
            "/api/jobs", json=read_graph({"deep": [{"x": f"s3://bucket/{key}"}]})
        ),
        "jobs: context images": lambda a: a.post("/api/jobs", json=render_graph({}, {"images": [key]})),
        "jobs: context nested": lambda a: a.post("/api/jobs", json=read_graph(None, {"source": {"a": [key]}})),
        "render: lora": lambda a: a.post("/api/render", json={"prompt": "x", "lora": {"job": theirs}}),
        "render: voice": lambda a: a.post("/api/render", json={"prompt": "x", "voice": {"job": theirs}}),
        "train studio: videoOptions lora": lambda a: a.post(
            "/api/train", data={**studio, "videoOptions": json.dumps({"lora": {"job": theirs}})}, files=studio_files
        ),
        "train studio: videoOptions voice key": lambda a: a.post(
            "/api/train", data={**studio, "videoOptions": json.dumps({"voice": {"key": key}})}, files=studio_files
        ),
    }


def _answer(r: httpx.Response, job_id: str) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["code"], body["message"].replace(job_id, "<id>")


@pytest.fixture
def stack(settings: Settings, plane_factory: Callable[..., Plane]) -> tuple[Plane, Settings]:
    s = settings.model_copy(update={"task_modules": MODULES, "rate_limit_per_minute": 1000})
    control = plane_factory("control", s)
    plane_factory("worker", s)
    return control, s


async def test_foreign_references_are_refused_like_missing_jobs(stack: tuple[Plane, Settings]) -> None:
    control, _ = stack
    mine, theirs = client(control.url), client(control.url, "test-key-2")
    b_job = theirs.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True})).json()["jobId"]
    a_job = mine.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True})).json()["jobId"]
    await wait_all_final(theirs, [b_job], 60)
    await wait_all_final(mine, [a_job], 60)
    missing = uuid.uuid4().hex
    before = len(mine.get("/api/jobs", params={"limit": 200}).json()["items"])
    for name, attack in _attacks(b_job, f"jobs/{b_job}/w/result.txt").items():
        r = attack(mine)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (name, r.status_code, r.text)
        ghost = _attacks(missing, f"jobs/{missing}/w/result.txt")[name](mine)
        assert _answer(r, b_job) == _answer(ghost, missing), name
    assert len(mine.get("/api/jobs", params={"limit": 200}).json()["items"]) == before, "nothing was accepted"

    for name, key in {
        "dot-dot out of my job": f"jobs/{a_job}/../{b_job}/w/result.txt",
        "dot-dot segment": f"jobs/../jobs/{b_job}/w/result.txt",
        "backslash": f"jobs/{a_job}/..\\{b_job}/w/result.txt",
        "not a job id": "jobs/a:b/result.txt",
    }.items():
        r = mine.post("/api/jobs", json=read_graph(key))
        assert r.status_code == 422 and r.json()["code"] == "invalid_reference", (name, r.text)
        assert r.json()["pointer"].startswith("/nodes/0/params/source"), r.json()

    # The same paths with my own job are accepted and the task reads what they name.
    ok = mine.post("/api/jobs", json=read_graph({"job": a_job}))
    assert ok.status_code == 202, ok.text
    own = mine.post("/api/jobs", json=read_graph(None, {"source": f"jobs/{a_job}/w/result.txt"})).json()["jobId"]
    records = await wait_all_final(mine, [ok.json()["jobId"], own], 60)
    for record in records.values():
        assert record["status"] == "completed", record
        assert record["graph"]["nodes"][0]["output"]["text"] == "2"


async def test_the_task_checks_again_before_reading(stack: tuple[Plane, Settings], redis: Redis) -> None:
    """Records that name another owner's job without passing submission (written straight to Redis): the node
    fails with the same "no job" before the task reads anything."""
    control, s = stack
    theirs = client(control.url, "test-key-2")
    b_job = theirs.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True})).json()["jobId"]
    await wait_all_final(theirs, [b_job], 60)
    keys = Keys(s.key_prefix)
    events = EventLog(redis, keys, s.event_maxlen)
    store = JobStore(redis, keys, events, s.job_ttl_seconds)
    bridge = Bridge(redis, keys, s)
    key = f"jobs/{b_job}/w/result.txt"
    smuggled = {
        "param key": ({"source": key}, {}),
        "param {job}": ({"source": {"job": b_job}}, {}),
        "context": ({}, {"source": key}),
    }
    job_ids = {}
    for name, (params, context) in smuggled.items():
        doc = graph([("read", "test.read", "data", params)], [])
        doc.context = context
        job = await store.create(doc, owner=owner_of("test-key-1"))
        await submit(bridge, job)
        job_ids[name] = job.job_id
    mine = client(control.url)
    records = await wait_all_final(mine, list(job_ids.values()), 60)
    for name, job_id in job_ids.items():
        record = records[job_id]
        assert record["status"] == "failed" and f"no job {b_job}" in record["error"], (name, record)
        assert await redis.get(keys.prefix + f":test:reads:{job_id}") is None, f"{name}: the task ran"

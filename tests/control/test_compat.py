"""The original stack's surface, as its frontend uses it: `/ws` SUBSCRIBE/UNSUBSCRIBE and GET /api/status/{id}."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from common.jobs import FINAL_STATUSES
from common.settings import Settings
from tests.support.api import client, graph_doc, ws_follow
from tests.support.processes import Plane


class OriginalClient:
    """Written the way the original frontend talks to its server: one socket, upper-case SUBSCRIBE, read frames
    until the job's status is terminal, then UNSUBSCRIBE; the status route for a page reload."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def status(self, job_id: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/status/{job_id}", headers={"Authorization": f"Bearer {self.token}"})

    async def watch(self, job_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every frame until the terminal status, and the answer to UNSUBSCRIBE."""
        frames: list[dict[str, Any]] = []
        ws_url = self.url.replace("http://", "ws://") + f"/ws?token={self.token}"
        async with websockets.connect(ws_url) as ws, asyncio.timeout(60):
            await ws.send(json.dumps({"action": "SUBSCRIBE", "jobId": job_id}))
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["type"] == "error":
                    break
                event = frame.get("event") or {}
                if frame["type"] == "subscribed" and frame["job"]["status"] in FINAL_STATUSES:
                    break
                if event.get("kind") == "status" and event.get("status") in FINAL_STATUSES:
                    break
            await ws.send(json.dumps({"action": "UNSUBSCRIBE", "jobId": job_id}))
            while (answer := json.loads(await ws.recv()))["type"] == "heartbeat":
                pass
        return frames, answer


async def test_original_client_follows_a_job_to_the_end(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    api = client(control.url)
    job_id = api.post("/api/jobs", json=graph_doc({"steps": 6, "step_seconds": 0.05})).json()["jobId"]
    original = OriginalClient(control.url, "test-key-1")
    before = original.status(job_id)  # no worker yet: the data node waits
    assert before.status_code == 200 and before.json()["status"] in ("queued", "running"), before.text
    assert before.json()["progress"] < 0.5 and before.json()["nodes"][1]["status"] == "pending"

    plane_factory("worker", settings)
    frames, answer = await original.watch(job_id)
    types = [f["type"] for f in frames]
    assert types[:2] == ["ready", "subscribed"], types  # Biplane's protocol answers the alias
    events = [f["event"] for f in frames if f["type"] == "event"]
    start = frames[1]["seq"]  # the snapshot's seq: events follow it without a gap
    assert [e["seq"] for e in events] == list(range(start + 1, start + len(events) + 1))
    assert {"node", "progress"} <= {e["kind"] for e in events}
    assert events[-1]["status"] == "completed"
    assert answer == {"type": "unsubscribed", "jobId": job_id}

    after = original.status(job_id).json()
    assert after["status"] == "completed" and after["progress"] == 1.0
    assert [(n["id"], n["status"]) for n in after["nodes"]] == [
        ("prep", "completed"),
        ("w", "completed"),
        ("publish", "completed"),
    ]
    assert after["jobId"] == job_id and after["error"] is None


async def test_aliases_check_auth_and_ids_like_the_routes_they_alias(control: Plane) -> None:
    theirs = client(control.url, "test-key-2").post("/api/jobs", json=graph_doc()).json()["jobId"]
    original = OriginalClient(control.url, "test-key-1")
    for job_id in (theirs, "a:b", "x" * 65):
        r = original.status(job_id)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), (job_id, r.text)
    assert httpx.get(f"{control.url}/api/status/{theirs}").status_code == 401
    assert OriginalClient(control.url, "wrong").status(theirs).status_code == 401

    frames, answer = await original.watch(theirs)  # another owner's job: no such job, connection kept
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "not_found", frames
    assert answer["type"] == "unsubscribed"
    base = control.url.replace("http://", "ws://")
    async with websockets.connect(f"{base}/ws") as ws:  # SUBSCRIBE before auth: refused like subscribe
        await ws.send(json.dumps({"action": "SUBSCRIBE", "jobId": theirs}))
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4401


async def test_get_manifest_records_what_ran_the_job(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    """The original's capabilities.getManifest as a graph service: the merged manifest lands in the outputs."""
    plane_factory("worker", settings)
    doc = graph_doc({"steps": 2}, publish=False)
    doc["nodes"].append({"id": "ran_on", "service": "get_manifest", "plane": "control", "params": {}})
    doc["nodes"].append(
        {"id": "ran_on_full", "service": "get_manifest", "plane": "control", "params": {"includeParams": True}}
    )
    doc["edges"] += [{"from": "w", "to": "ran_on"}, {"from": "w", "to": "ran_on_full"}]
    api = client(control.url)
    r = api.post("/api/jobs", json=doc)
    assert r.status_code == 202, r.text
    await ws_follow(control.url, r.json()["jobId"], since=0)
    record = api.get(f"/api/jobs/{r.json()['jobId']}").json()
    assert record["status"] == "completed", record
    nodes = {n["id"]: n for n in record["graph"]["nodes"]}
    out = nodes["ran_on"]["output"]
    assert out["workersAlive"] == 1 and out["warning"] is None
    (ran,) = out["workers"]
    assert ran["plane"] == "data" and "test.work" in ran["services"], ran
    assert ran["instance"], ran
    services = {s["service"]: s for s in out["services"]}
    assert services["get_manifest"]["plane"] == "control" and services["test.work"]["workers"] == 1
    assert "params" not in services["train_lora"]
    full = {s["service"]: s for s in nodes["ran_on_full"]["output"]["services"]}
    assert "learningRate" in full["train_lora"]["params"]["properties"]
    live = api.get("/api/capabilities").json()  # the route answers the same merged manifest
    assert {s["service"] for s in live["services"]} == set(full)

"""Helpers for tests that talk to a real control process over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from common.jobs import FINAL_STATUSES


def client(url: str, key: str | None = "test-key-1") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def graph_doc(work: dict[str, Any] | None = None, publish: bool = True) -> dict[str, Any]:
    """prep (control) -> w (data, test.work) [-> publish (publish_artifacts)]."""
    nodes = [
        {"id": "prep", "service": "test.prepare", "plane": "control", "params": {}},
        {"id": "w", "service": "test.work", "plane": "data", "params": work or {"steps": 4}},
    ]
    edges = [{"from": "prep", "to": "w"}]
    if publish:
        nodes.append({"id": "publish", "service": "publish_artifacts", "plane": "control", "params": {}})
        edges.append({"from": "w", "to": "publish"})
    return {"schemaVersion": "biplane.graph.v1", "workflow": "custom", "nodes": nodes, "edges": edges}


async def ws_follow(
    url: str, job_id: str, since: int | None = None, stop_after: int | None = None, token: str = "test-key-1"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Subscribe over /ws; return (subscribed message, events) until the job ends or stop_after events."""
    ws_url = url.replace("http://", "ws://") + f"/ws?token={token}"
    events: list[dict[str, Any]] = []
    async with websockets.connect(ws_url) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        msg: dict[str, Any] = {"action": "subscribe", "jobId": job_id}
        if since is not None:
            msg["since"] = since
        await ws.send(json.dumps(msg))
        subscribed = json.loads(await ws.recv())
        assert subscribed["type"] == "subscribed", subscribed
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] != "event":
                continue
            events.append(frame["event"])
            if stop_after is not None and len(events) >= stop_after:
                break
            ev = frame["event"]
            if ev["kind"] == "status" and ev["status"] in ("completed", "failed", "canceled"):
                break
    return subscribed, events


async def wait_all_final(api: httpx.Client, job_ids: list[str], timeout: float) -> dict[str, dict]:
    """Poll the REST API (Redis may be restarting underneath: no event stream to lean on)."""
    records: dict[str, dict] = {}
    async with asyncio.timeout(timeout):
        while len(records) < len(job_ids):
            for job_id in job_ids:
                if job_id in records:
                    continue
                try:
                    r = api.get(f"/api/jobs/{job_id}")
                except httpx.TransportError:
                    continue
                if r.status_code == 200 and r.json()["status"] in FINAL_STATUSES:
                    records[job_id] = r.json()
            await asyncio.sleep(0.2)
    return records

"""The Python client against a real control + worker: submit, follow (with reconnect), download."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from client.api import AsyncClient, Client, RemoteError
from common.settings import Settings
from tests.support.api import graph_doc
from tests.support.processes import Plane


async def test_async_client_follow_survives_control_restart(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    control = plane_factory("control", settings)
    plane_factory("worker", settings)
    async with AsyncClient(control.url, "test-key-1") as c:
        job_id = await c.submit_graph(graph_doc({"steps": 30, "step_seconds": 0.05}))
        seqs, restarted = [], False
        async for event in c.follow(job_id):
            seqs.append(event.seq)
            if not restarted and event.kind == "progress":
                control.kill()  # the socket drops mid-job; a new control takes over on the same port
                control.start()
                restarted = True
        assert restarted and seqs == list(range(1, len(seqs) + 1))
        job = await c.job(job_id)
        assert job.status == "completed"
        manifest = next(a for a in await c.artifacts(job_id) if a.name == "manifest.json")
        path = await c.download(job_id, manifest, tmp_path)
        assert path.read_bytes().startswith(b"{")


def test_sync_client_errors_carry_code_and_pointer(control: Plane) -> None:
    c = Client(control.url, "test-key-1")
    bad = graph_doc()
    bad["nodes"][0]["service"] = "nope"
    with pytest.raises(RemoteError) as err:
        c.submit_graph(bad)
    assert (err.value.status, err.value.code, err.value.pointer) == (422, "invalid_graph", "/nodes/0/service")
    with pytest.raises(RemoteError, match="401 unauthorized"):
        Client(control.url, "wrong").jobs()
    assert c.jobs() == ([], None)


def test_metrics_label_routes_by_template(control: Plane) -> None:
    import httpx

    c = Client(control.url, "test-key-1")
    with pytest.raises(RemoteError):
        c.job("f" * 32)
    text = httpx.get(f"{control.url}/metrics").text
    assert 'biplane_http_requests_total{method="GET",route="/api/jobs/{job_id}",status="404"} 1.0' in text
    assert "f" * 32 not in text


def test_capabilities_show_a_live_demo_worker(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    plane_factory("worker", settings)
    caps = Client(control.url, "test-key-1").capabilities()
    assert caps["workersAlive"] == 1 and caps["demo"] is True and caps["warning"] is None
    assert {s["service"]: s["workers"] for s in caps["services"]}["test.work"] == 1

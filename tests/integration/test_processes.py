"""BIPLANE_PROCESSES: copies of a plane on one host share its port, its consumer group and its metrics."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from common.settings import Settings
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.jobs import eventually
from tests.support.processes import Plane


def completed_nodes(url: str, service: str) -> float:
    """biplane_nodes_total{status="completed"} of service, as the plane's /metrics answers it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "biplane_nodes_total" and s.labels.get("service") == service and s.labels["status"] == "completed"
    )


async def test_copies_share_the_port_the_group_and_the_metrics(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    control = plane_factory("control", settings, BIPLANE_PROCESSES="2")
    worker = plane_factory("worker", settings, BIPLANE_PROCESSES="2")
    assert control.proc is not None and worker.proc is not None
    copies = psutil.Process(worker.proc.pid).children()
    assert len(copies) == 2 and len(psutil.Process(control.proc.pid).children()) == 2
    api = client(control.url)
    jobs = 12
    ids = [
        api.post("/api/jobs", json=graph_doc({"steps": 3, "step_seconds": 0.1}, publish=False)).json()["jobId"]
        for _ in range(jobs)
    ]
    records = await wait_all_final(api, ids, 120)
    assert {r["status"] for r in records.values()} == {"completed"}
    ran_on = {next(n for n in r["graph"]["nodes"] if n["id"] == "w")["output"]["pid"] for r in records.values()}
    assert ran_on == {c.pid for c in copies}, "both copies consume the data stream (one job at a time each)"
    # Whichever copy answers the scrape, /metrics is the sum over both.
    assert [completed_nodes(worker.url, "test.work") for _ in range(4)] == [jobs] * 4

    # A copy that dies is started again; the plane stays ready meanwhile.
    copies[0].kill()
    await eventually(
        lambda: (
            {c.pid for c in psutil.Process(worker.proc.pid).children()} - {copies[0].pid} != {copies[1].pid}
            and len(psutil.Process(worker.proc.pid).children()) == 2
        ),
        timeout=60,
        what="the dead copy started again",
    )
    more = api.post("/api/jobs", json=graph_doc({"steps": 1}, publish=False)).json()["jobId"]
    assert (await wait_all_final(api, [more], 60))[more]["status"] == "completed"

    # SIGTERM to the supervisor stops every copy.
    survivors = psutil.Process(worker.proc.pid).children()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    gone, alive = psutil.wait_procs(survivors, timeout=10)
    assert not alive

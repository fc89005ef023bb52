"""S3 down under control: clients get 503 "storage unavailable" with Retry-After, never the internal S3
host:port (that goes to the log), and a job failed by the outage does not carry it either."""

from __future__ import annotations

from collections.abc import Callable

from common.settings import Settings
from infra.dev.devstack import S3Server
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.media import png
from tests.support.processes import Plane


async def test_storage_errors_do_not_leak_the_endpoint(
    own_s3: tuple[S3Server, Settings], plane_factory: Callable[..., Plane]
) -> None:
    s3, s = own_s3
    s = s.model_copy(update={"s3_retry_seconds": 1})
    control = plane_factory("control", s)
    worker = plane_factory("worker", s)
    api = client(control.url)
    done = api.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True})).json()["jobId"]
    assert (await wait_all_final(api, [done], 60))[done]["status"] == "completed"
    s3.stop()
    port = s3.endpoint.rsplit(":", 1)[1]
    answers = {
        "upload": api.post("/api/train", data={"prompt": "p"}, files=[("images", ("a.png", png(), "image/png"))]),
        "list artifacts": api.get(f"/api/jobs/{done}/artifacts"),
        "download": api.get(f"/api/jobs/{done}/artifacts/w/result.txt"),
    }
    for name, r in answers.items():
        assert r.status_code == 503, (name, r.text)
        assert r.json() == {"code": "unavailable", "message": "storage unavailable"}, name
        assert int(r.headers["Retry-After"]) > 0 and port not in r.text, name
    failed = api.post("/api/jobs", json=graph_doc({"steps": 1, "artifact": True}, publish=False)).json()["jobId"]
    record = (await wait_all_final(api, [failed], 60))[failed]
    assert record["status"] == "failed" and "S3 unreachable" in record["error"], record["error"]
    assert s3.endpoint not in record["error"] and f"port={port}" not in record["error"], record["error"]
    assert port in control.log.read_text(), "the detail is in the log"
    assert worker.proc and worker.proc.poll() is None

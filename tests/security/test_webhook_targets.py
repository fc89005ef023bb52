"""Webhook targets: internal addresses are refused at submission and again at delivery (after resolution);
BIPLANE_WEBHOOK_ALLOW lets an operator allow listed hosts or networks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from redis.asyncio import Redis

from common.executor import submit
from common.models.graph_schema import GraphDocument
from common.settings import Settings
from control.auth import owner_of
from infra.dev.devstack import free_port
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.jobs import Harness
from tests.support.media import png, wav
from tests.support.processes import Plane


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers, body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.completed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if b'"job.completed"' in body:
                    outer.completed.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    threading.Thread(target=r.server.serve_forever, daemon=True).start()
    yield r
    r.server.shutdown()


def internal_targets(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://2130706433:{port}/hook",  # 127.0.0.1 as one decimal number
        f"http://0x7f000001:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "https://no-such-host.invalid/hook",
    ]


def _submit(api_url: str, route: str, webhook: str) -> tuple[int, str]:
    api = client(api_url)
    if route == "jobs":
        r = api.post("/api/jobs", params={"webhook": webhook}, json=graph_doc())
    elif route == "render":
        r = api.post("/api/render", json={"prompt": "x", "webhook": webhook})
    elif route == "train":
        files = [("images", ("a.png", png(), "image/png"))]
        r = api.post("/api/train", data={"prompt": "p", "webhook": webhook}, files=files)
    else:
        files = [("clips", ("c.wav", wav(), "audio/wav"))]
        r = api.post("/api/voice", data={"transcripts": "t", "webhook": webhook}, files=files)
    return r.status_code, r.json().get("code", "")


def test_internal_targets_are_refused_by_default(control: Plane, receiver: Receiver) -> None:
    for route in ("jobs", "render", "train", "voice"):
        for target in internal_targets(receiver.port):
            assert _submit(control.url, route, target) == (422, "webhook_refused"), (route, target)
    assert client(control.url).get("/api/jobs").json()["items"] == []
    assert receiver.posts == []


async def test_allowed_networks_and_hosts(
    settings: Settings, plane_factory: Callable[..., Plane], receiver: Receiver
) -> None:
    s = settings.model_copy(update={"webhook_allow": "127.0.0.0/8, hooks.example.internal"})
    control = plane_factory("control", s)
    plane_factory("worker", s)
    status, _ = _submit(control.url, "jobs", receiver.url)
    assert status == 202
    assert await asyncio.to_thread(receiver.completed.wait, 60), "no delivery to the allowed network"
    headers, _ = receiver.posts[-1]
    assert headers["host"] == f"127.0.0.1:{receiver.port}" and headers["webhook-signature"]
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/hook", "http://[::1]/hook"):
        assert _submit(control.url, "jobs", target) == (422, "webhook_refused"), "only what is listed"


async def test_delivery_checks_again(
    settings: Settings, plane_factory: Callable[..., Plane], receiver: Receiver, redis: Redis
) -> None:
    """A record whose webhook got past submission (a name that answered differently then) is not called."""
    control = plane_factory("control", settings)
    plane_factory("worker", settings)
    h = Harness(redis, settings)
    await h.bridge.ensure_groups()
    doc = graph_doc({"steps": 1}, publish=False)
    job = await h.store.create(GraphDocument.model_validate(doc), owner=owner_of("test-key-1"), webhook=receiver.url)
    await submit(h.bridge, job)
    assert (await wait_all_final(client(control.url), [job.job_id], 60))[job.job_id]["status"] == "completed"
    async with asyncio.timeout(20):
        while "webhook refused" not in control.log.read_text():
            await asyncio.sleep(0.2)
    assert receiver.posts == []

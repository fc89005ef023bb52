"""Two workers on two hosts share 20 jobs: the second worker runs in its own network namespace (its own
network stack, reaching Redis and S3 over a veth link as another machine would). Skipped where the
machine does not allow network namespaces (not root, or no `ip`)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.dev.devstack import RedisServer, S3Server, free_port, ready, stop_process, wait_until
from tests.support.api import client, graph_doc, wait_all_final
from tests.support.processes import ROOT, Plane, make_settings, settings_env


@dataclass(frozen=True)
class Host:
    netns: str
    host_ip: str  #: this host's end of the link: Redis and S3 listen here
    ns_ip: str  #: the second host's address


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def second_host() -> Iterator[Host]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    name, n = f"bp{uuid.uuid4().hex[:8]}", random.randint(1, 250)
    host = Host(name, f"10.231.{n}.1", f"10.231.{n}.2")
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"this machine does not allow network namespaces: {e.stderr.strip()}")
    try:
        _ip("link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
        _ip("link", "set", f"{name}b", "netns", name)
        _ip("addr", "add", f"{host.host_ip}/30", "dev", f"{name}a")
        _ip("link", "set", f"{name}a", "up")
        _ip("-n", name, "addr", "add", f"{host.ns_ip}/30", "dev", f"{name}b")
        _ip("-n", name, "link", "set", f"{name}b", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", f"{name}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def test_a_worker_on_a_second_host_shares_the_jobs(
    tmp_path: Path, second_host: Host, plane_factory: Callable[..., Plane]
) -> None:
    redis = RedisServer(tmp_path / "redis", host=second_host.host_ip, password=uuid.uuid4().hex).start()
    s3 = S3Server(tmp_path / "s3", host=second_host.host_ip).start()
    remote: subprocess.Popen[bytes] | None = None
    try:
        settings = make_settings(redis, s3, task_modules="tests.support.tasks")
        control = plane_factory("control", settings)
        local = plane_factory("worker", settings)
        # The second host has its own loopback: this host's 127.0.0.1 services are not there.
        probe = f"import socket; print(socket.socket().connect_ex(('127.0.0.1', {control.port})))"
        in_ns = ["ip", "netns", "exec", second_host.netns, sys.executable]
        out = subprocess.run([*in_ns, "-c", probe], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() != "0", f"shares this host's loopback: {out}"
        port = free_port()
        env = settings_env(settings, BIPLANE_WORKER_PORT=str(port), BIPLANE_HOST=second_host.ns_ip)
        log = tmp_path / "remote-worker.log"
        with log.open("wb") as sink:
            remote = subprocess.Popen(
                [*in_ns, "-m", "worker"],
                env=env,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: ready(f"http://{second_host.ns_ip}:{port}"), 60, "worker on the second host", remote)

        api = client(control.url)
        jobs = [
            api.post("/api/jobs", json=graph_doc({"steps": 5, "step_seconds": 0.05}, publish=False)).json()["jobId"]
            for _ in range(20)
        ]
        records = await wait_all_final(api, jobs, 120)
        assert {r["status"] for r in records.values()} == {"completed"}, log.read_text()[-3000:]
        work = [next(n for n in r["graph"]["nodes"] if n["id"] == "w") for r in records.values()]
        assert all(w["attempts"] == 1 for w in work), "each job ran once"
        assert {w["output"]["pid"] for w in work} == {local.proc.pid, remote.pid}, "both hosts did work"  # type: ignore[union-attr]
    finally:
        if remote is not None:
            stop_process(remote, grace=10)
        s3.stop()
        redis.stop()

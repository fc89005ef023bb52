"""`make run` brings control and worker to /ready on the embedded Redis and S3; Ctrl-C stops all within 10 s
while the worker trains at 512 px, and so does a SIGTERM to the stack process alone (how `biplane demo` stops
the stack it started)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from infra.dev.devstack import free_port, wait_until
from tests.support.media import training_png
from tests.support.processes import ROOT


@pytest.mark.parametrize(
    ("command", "stop"),
    [
        (["make", "--no-print-directory", "run"], "ctrl-c"),
        ([sys.executable, "-m", "infra.dev.devstack"], "sigterm"),
    ],
    ids=["make-run-ctrl-c", "devstack-sigterm"],
)
def test_the_stack_starts_and_stops_with_every_process(tmp_path: Path, command: list[str], stop: str) -> None:
    ports = {
        name: free_port()
        for name in ("CONTROL_PORT", "WORKER_PORT", "FRONTEND_PORT", "LLM_PORT", "DEV_REDIS_PORT", "DEV_S3_PORT")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    env.update({f"BIPLANE_{k}": str(v) for k, v in ports.items()})
    env["BIPLANE_DEV_DIR"] = str(tmp_path / "dev")
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Biplane is up" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(600), "stack did not come up:\n" + "".join(lines[-60:])
        for port in (ports["CONTROL_PORT"], ports["WORKER_PORT"]):
            resp = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
            assert resp.status_code == 200, resp.text
            assert resp.json()["checks"] == {"redis": True, "s3": True, "executor": True}
        ui = httpx.get(f"http://127.0.0.1:{ports['FRONTEND_PORT']}/", timeout=10)  # the web UI is part of the stack
        assert ui.status_code == 200 and "Biplane" in ui.text, ui.text[:300]
        ui_ready = f"http://127.0.0.1:{ports['FRONTEND_PORT']}/ready"  # it reaches this stack's control (not :8000)
        wait_until(lambda: httpx.get(ui_ready, timeout=5).json()["control"], 30, "the UI reaching control")
        announced = f"UI       http://127.0.0.1:{ports['FRONTEND_PORT']}"
        assert any(announced in line for line in lines), "the UI is announced"
        llm = httpx.get(f"http://127.0.0.1:{ports['LLM_PORT']}/v1/models", timeout=5)  # the embedded demo LLM
        assert llm.status_code == 200, llm.text
        key = (tmp_path / "dev" / "api-key").read_text().strip()
        reader.join(timeout=1)
        assert any(key in line for line in lines), "the API key is printed"
        if stop == "ctrl-c":
            busy_worker(ports["CONTROL_PORT"], key)
    finally:
        began = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the whole foreground group
        else:
            proc.terminate()  # the stack process alone: it must stop its children itself
        proc.wait(timeout=60)
    assert time.monotonic() - began < 10, "the whole stack stops within 10 s"
    for port in (
        ports["CONTROL_PORT"],
        ports["WORKER_PORT"],
        ports["FRONTEND_PORT"],
        ports["LLM_PORT"],
        ports["DEV_REDIS_PORT"],
        ports["DEV_S3_PORT"],
    ):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            raise AssertionError(f"port {port} still answers after {stop}")
        except httpx.TransportError:
            pass


def busy_worker(control_port: int, key: str) -> None:
    """A LoRA job at 512 px (a step of the demo model takes minutes on a CPU), running in the worker."""
    url, headers = f"http://127.0.0.1:{control_port}", {"Authorization": f"Bearer {key}"}
    files = [("images", (f"{i}.png", training_png(i), "image/png")) for i in range(2)]
    options = '{"resolution": 512, "steps": 500, "cacheLatents": false, "baseline": false}'
    resp = httpx.post(f"{url}/api/train", data={"prompt": "a box", "options": options}, files=files, headers=headers)
    assert resp.status_code == 202, resp.text
    job = resp.json()["jobId"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        nodes = httpx.get(f"{url}/api/jobs/{job}", headers=headers).json()["graph"]["nodes"]
        if any(n["service"] == "train_lora" and n["status"] == "running" for n in nodes):
            return
        time.sleep(0.5)
    raise AssertionError("train_lora never started")

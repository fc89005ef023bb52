"""A real stack for UI tests: control, a worker with `train_lora` (the real one, or fake_lora until it exists)
and, for browser tests, `python -m frontend`, on the session's Redis and S3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server, free_port, stop_process, wait_until
from tests.conftest import Plane, make_settings, settings_env
from worker.tasks import registry as worker_tasks

API_KEY = "test-key-1"
#: Which train_lora runs: the worker's real one when it is registered, else the test double.
REAL_LORA = worker_tasks.get("train_lora") is not None
#: Options of a short lora job on either path.
LORA_OPTIONS: dict[str, Any] = (
    {"steps": 3, "resolution": 64, "sampleEvery": 1} if REAL_LORA else {"steps": 6, "resolution": 64, "sampleEvery": 2}
)


def ui_settings(redis_server: RedisServer, s3_server: S3Server) -> Settings:
    return make_settings(redis_server, s3_server, prefix="ui", api_keys=f"{API_KEY},test-key-2", api_key=API_KEY)


def start_worker(settings: Settings, log_dir: Path, step_seconds: float = 0.2) -> Plane:
    extra = {} if REAL_LORA else {"BIPLANE_TASK_MODULES": "tests.browser.fake_lora"}
    return Plane("worker", settings, log_dir, FAKE_LORA_STEP_SECONDS=str(step_seconds), **extra).start()


class Frontend:
    """A real `python -m frontend` process pointed at control (behind `launcher`, a command that runs it, when set)."""

    launcher: tuple[str, ...] = ()

    def __init__(self, settings: Settings, control_url: str, log_dir: Path) -> None:
        self.port = free_port()
        env = settings_env(
            settings, BIPLANE_URL=control_url, BIPLANE_API_KEY=API_KEY, BIPLANE_FRONTEND_PORT=str(self.port)
        )
        env.pop("PYTEST_CURRENT_TEST", None)  # NiceGUI would take it for its own test mode
        self.env, self.log, self.cwd = env, log_dir / f"frontend-{self.port}.log", log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Frontend:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "frontend"],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: httpx.get(self.url, timeout=2).status_code == 200, 60, "frontend", self.proc)
        except Exception as e:
            raise RuntimeError(f"{e}\n--- {self.log} ---\n{self.log.read_text()[-4000:]}") from e
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def submit_lora(control_url: str, images: list[bytes], options: dict[str, Any], prompt: str = "a red box") -> str:
    """Submit a lora job over REST as the UI's key (for tests that start on the job page)."""
    files = [("images", (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]
    data = {"prompt": prompt, "workflow": "lora", "options": json.dumps(options)}
    resp = httpx.post(
        f"{control_url}/api/train", data=data, files=files, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])

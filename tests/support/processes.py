"""The test suite's real processes: `python -m control|worker|frontend` with settings passed as BIPLANE_* vars."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Self

import httpx

from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server, free_port, ready, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def make_settings(redis_server: RedisServer, s3_server: S3Server, prefix: str = "t", **overrides: Any) -> Settings:
    """Settings with their own key prefix and bucket on the session's servers, fast leases and reclaim."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "redis_url": redis_server.url,
        "key_prefix": f"{prefix}{tag}",
        "s3_endpoint": s3_server.endpoint,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "bucket": f"{prefix}-{tag}",
        "lease_seconds": 3,
        "claim_idle_seconds": 2,
        "heartbeat_seconds": 0.5,
        "s3_retry_seconds": 5,
        "api_keys": "test-key-1,test-key-2",
        **overrides,
    }
    return Settings(**values)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The BIPLANE_* environment that reproduces settings in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"BIPLANE_{name.upper()}"] = str(value)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Plane:
    """A real `python -m control|worker` process (behind `launcher`, a command that runs it, when set)."""

    launcher: tuple[str, ...] = ()

    PORT_VARS = {
        "control": "BIPLANE_CONTROL_PORT",
        "worker": "BIPLANE_WORKER_PORT",
        "frontend": "BIPLANE_FRONTEND_PORT",
    }

    def __init__(self, module: str, settings: Settings, log_dir: Path, **extra: str) -> None:
        self.module, self.cwd = module, ROOT
        self.port = free_port()
        self.env = settings_env(settings, **{self.PORT_VARS[module]: str(self.port)}, **extra)
        self.log = log_dir / f"{module}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        return ready(self.url)

    def start(self) -> Self:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", self.module],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self.is_ready, 60, f"{self.module} ready", self.proc)
        except Exception as e:
            raise RuntimeError(f"{e}\n--- {self.log} ---\n{self.log.read_text()[-4000:]}") from e
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)


class Frontend(Plane):
    """A real `python -m frontend` process pointed at control, with the settings' API key."""

    def __init__(self, settings: Settings, control_url: str, log_dir: Path) -> None:
        super().__init__("frontend", settings, log_dir, BIPLANE_URL=control_url)
        self.env.pop("PYTEST_CURRENT_TEST", None)  # NiceGUI would take it for its own test mode
        self.cwd = log_dir  # NiceGUI keeps its storage folder in the working directory

    def is_ready(self) -> bool:
        return httpx.get(self.url, timeout=2).status_code == 200

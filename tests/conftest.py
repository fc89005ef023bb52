"""Session fixtures: a private redis-server and SeaweedFS S3 on free loopback ports; per-test prefix and bucket."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from common.bridge import connect
from common.settings import Settings
from common.storage import Storage
from infra.dev.devstack import RedisServer, S3Server, free_port, ready, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"), secret_key="test-secret-" + uuid.uuid4().hex[:12])
    server.start()
    yield server
    server.stop()


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


@pytest.fixture
def settings(redis_server: RedisServer, s3_server: S3Server) -> Settings:
    """Settings of one test, with the test services loaded into the planes."""
    return make_settings(redis_server, s3_server, task_modules="tests.support.tasks")


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = connect(settings)
    yield client
    await client.aclose()


@pytest.fixture
def storage(settings: Settings) -> Storage:
    st = Storage(settings)
    st.ensure_bucket()
    return st


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

    def __init__(self, module: str, settings: Settings, log_dir: Path, **extra: str) -> None:
        self.module = module
        self.port = free_port()
        port_var = "BIPLANE_CONTROL_PORT" if module == "control" else "BIPLANE_WORKER_PORT"
        self.env = settings_env(settings, **{port_var: str(self.port)}, **extra)
        self.log = log_dir / f"{module}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Plane:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", self.module],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: ready(self.url), 60, f"{self.module} /ready", self.proc)
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


@pytest.fixture
def plane_factory(tmp_path: Path) -> Iterator[Callable[..., Plane]]:
    started: list[Plane] = []

    def start(module: str, settings: Settings, **extra: str) -> Plane:
        plane = Plane(module, settings, tmp_path, **extra).start()
        started.append(plane)
        return plane

    yield start
    for plane in started:
        plane.stop()


@pytest.fixture
def control(settings: Settings, plane_factory: Callable[..., Plane]) -> Plane:
    """A real control process with the test's settings."""
    return plane_factory("control", settings)

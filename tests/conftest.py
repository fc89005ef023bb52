"""Session fixtures: a private redis-server and SeaweedFS S3 on free loopback ports; per-test prefix and bucket."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.bridge import connect
from common.settings import Settings
from common.storage import Storage
from infra.dev.devstack import RedisServer, S3Server
from tests.support.processes import Plane, make_settings


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

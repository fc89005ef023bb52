"""UI tests with NiceGUI's simulated `User` against a real control process and worker (module-scoped)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nicegui.testing import User, user_simulation

from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server
from tests.support.processes import Plane
from tests.support.ui import API_KEY, ui_settings

MAIN = Path(__file__).with_name("ui_main.py")


@dataclass
class Stack:
    settings: Settings
    control: Plane
    worker: Plane


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = ui_settings(redis_server, s3_server)
    logs = tmp_path_factory.mktemp("ui-stack")
    control = Plane("control", settings, logs).start()
    # The page tests pin the fast test double of train_lora (and no train_voice): they check UI logic, and
    # the browser tests run the real ML tasks.
    worker = Plane(
        "worker",
        settings,
        logs,
        FAKE_LORA_STEP_SECONDS="0.05",
        BIPLANE_BUILTIN_TASKS="false",
        BIPLANE_TASK_MODULES="tests.support.fake_lora",
    ).start()
    yield Stack(settings, control, worker)
    worker.stop()
    control.stop()


@pytest.fixture
async def user(stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """A simulated browser on the UI built by frontend.app.create, pointed at the module's control."""
    monkeypatch.setenv("BIPLANE_URL", stack.control.url)
    monkeypatch.setenv("BIPLANE_API_KEY", API_KEY)
    async with user_simulation(main_file=MAIN) as u:
        yield u
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, f"unexpected ERROR logs: {[r.getMessage() for r in errors]}"

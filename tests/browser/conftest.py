"""Browser tests: headless Debian Chromium (Playwright, never `playwright install`) against a real stack:
the session's Redis and S3, then control, a worker and `python -m frontend` as processes of this module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server
from tests.support.processes import ROOT, Frontend, Plane
from tests.support.ui import ui_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots land here (git-ignored) so they outlive pytest's temporary folders.
OUTPUT = ROOT / "test-output" / "browser"


@dataclass
class UiStack:
    settings: Settings
    control: Plane
    worker: Plane
    frontend: Frontend


@pytest.fixture(scope="module")
def ui_stack(
    redis_server: RedisServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UiStack]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run infra/dev/system-deps.sh (make system)")
    settings = ui_settings(redis_server, s3_server)
    logs = tmp_path_factory.mktemp("browser-stack")
    control = Plane("control", settings, logs).start()
    worker = Plane("worker", settings, logs).start()
    frontend = Frontend(settings, control.url, logs).start()
    yield UiStack(settings, control, worker, frontend)
    frontend.stop()
    worker.stop()
    control.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, ui_stack: UiStack) -> Iterator[Page]:
    context = browser.new_context(base_url=ui_stack.frontend.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT

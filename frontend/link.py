"""The UI server's link to the control plane: one AsyncClient, a health probe and the capabilities it caches.

The browser never talks to control: every page goes through this object, which holds the API key.
`online` drives the connection badge; `demo` and `workers_alive` drive the banners; the new-job form starts
from `capabilities` (the alive workers' recommendation).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import structlog

from client.api import AsyncClient, RemoteError
from common.settings import Settings

log = structlog.get_logger(__name__)

PROBE_SECONDS = 1.0  #: how often /health is asked; the badge turns red within about this long
CAPABILITIES_SECONDS = 10.0  #: how often the demo flag and worker count are refreshed


class ControlLink:
    def __init__(self, settings: Settings, probe_seconds: float = PROBE_SECONDS) -> None:
        self.settings = settings
        self.client = AsyncClient(settings.url, settings.api_key.get_secret_value())
        self.probe_seconds = probe_seconds
        self.online = False
        self.checked = False  #: at least one probe answered or failed
        self.demo = False
        self.workers_alive: int | None = None
        self.capabilities: dict[str, Any] = {}  #: the latest answer of GET /api/capabilities
        self._capabilities_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._watch(), name="control-link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.http.aclose()

    async def check(self) -> bool:
        """Probe /health; on the way back up (and every so often) refresh the capabilities."""
        try:
            resp = await self.client.http.get("/health", timeout=max(0.5, self.probe_seconds))
            up = resp.status_code == 200
        except httpx.HTTPError:
            up = False
        if up != self.online and self.checked:
            log.info("control link " + ("up" if up else "down"), url=self.settings.url)
        came_back = up and not self.online
        self.online, self.checked = up, True
        if up and (came_back or time.monotonic() - self._capabilities_at > CAPABILITIES_SECONDS):
            await self.refresh_capabilities()
        return up

    async def refresh_capabilities(self) -> None:
        try:
            caps = await self.client.capabilities()
        except (RemoteError, httpx.HTTPError) as e:
            log.warning("capabilities unavailable", error=repr(e))
            return
        self.capabilities = caps
        self.demo = bool(caps.get("demo"))
        self.workers_alive = int(caps.get("workersAlive") or 0)
        self._capabilities_at = time.monotonic()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.probe_seconds)
            await self.check()

"""Assembles the control plane: plane shell + REST routes + WebSocket hub + webhooks."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from common.keys import Keys
from common.plane import PlaneState, create_plane_app
from common.registry import Registry, load_modules
from common.settings import Settings
from control import errors, metrics
from control.bodies import BodyGuard
from control.deps import Control
from control.hub import Hub
from control.metrics import HttpMetrics
from control.planner import Planner
from control.routes import artifacts, compat, events, forms, jobs, meta, ws
from control.tasks import registry as control_tasks
from control.webhooks import Webhooks

log = structlog.get_logger(__name__)


def build_registry(settings: Settings) -> Registry:
    """Control tasks plus plugin modules named in BIPLANE_TASK_MODULES (known to the planner)."""
    return Registry().merge(control_tasks).merge(load_modules(settings.task_module_list()))


def _setup(app: FastAPI, state: PlaneState) -> None:
    ex = state.executor
    hub = Hub(state.redis, Keys(state.settings.key_prefix), ex.events)
    webhooks = Webhooks(state.settings, ex.store, Keys(state.settings.key_prefix))
    hub.listeners.append(webhooks.on_event)
    app.state.control = Control(
        settings=state.settings,
        keys=Keys(state.settings.key_prefix),
        store=ex.store,
        events=ex.events,
        bridge=ex.bridge,
        storage=state.storage,
        hub=hub,
        planner=Planner(state.settings, state.registry),
        plane=state,
        egress=webhooks.policy,
    )
    app.state.webhooks = webhooks


async def run_hub(state: PlaneState) -> None:
    control: Control = state.app.state.control
    await control.hub.run()


async def count_workers(state: PlaneState) -> None:
    """Keep biplane_workers_alive current for alerts, whether or not anyone asks for capabilities."""
    control: Control = state.app.state.control
    while True:
        try:
            alive = await control.bridge.live_manifests(3 * state.settings.heartbeat_seconds)
            metrics.WORKERS_ALIVE.set(len(alive))
        except Exception as e:  # Redis down, a malformed heartbeat...: logged, never the end of the count
            log.warning("worker count failed", error=f"{type(e).__name__}: {e}")
        await asyncio.sleep(state.settings.heartbeat_seconds)


async def stop_webhooks(state: PlaneState) -> None:
    await state.app.state.webhooks.close()


def create_app(settings: Settings) -> FastAPI:
    app = create_plane_app(
        "control",
        settings,
        build_registry(settings),
        title="Biplane control plane",
        setup=_setup,
        background=(run_hub, count_workers),
        on_stop=(stop_webhooks,),
    )
    app.include_router(forms.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(artifacts.router)
    app.include_router(meta.router)
    app.include_router(ws.router)
    app.include_router(compat.router)
    errors.install(app)
    app.add_middleware(BodyGuard, settings=settings)  # before routing: a refused body is never read
    app.add_middleware(HttpMetrics)  # counts refused requests too (route "unmatched")
    if settings.cors_origin_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    return app

"""Assembles the worker's FastAPI app: health/metrics, data-plane executor, heartbeats."""

from __future__ import annotations

import asyncio
import platform
import time
from importlib.metadata import PackageNotFoundError, version

import structlog
from fastapi import FastAPI

from common import childproc
from common.estimate import Worker
from common.models.manifest_schema import StepSeconds
from common.plane import PlaneState, create_plane_app
from common.registry import Registry, load_modules
from common.settings import Settings
from worker import metrics
from worker.ml.device import auto_precision, describe
from worker.ml.models import statuses, uses_demo_models
from worker.tasks import registry as worker_tasks

log = structlog.get_logger(__name__)

#: Imported once by the forkserver that forks each task's child process, so a child starts in milliseconds.
PRELOAD = ["torch", "transformers", "diffusers", "peft", "av", "worker.tasks"]


def build_registry(settings: Settings) -> Registry:
    """The built-in ML tasks (unless BIPLANE_BUILTIN_TASKS=false) plus plugin modules."""
    registry = Registry().merge(worker_tasks) if settings.builtin_tasks else Registry()
    return registry.merge(load_modules(settings.task_module_list()))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "diffusers", "transformers", "peft", "langgraph"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def measured() -> list[StepSeconds]:
    """The step times this worker's tasks measured (the latest per service and resolution)."""
    return [
        StepSeconds(service=service, resolution=resolution, seconds=seconds)
        for (service, resolution), seconds in sorted(metrics.STEP_SECONDS_SEEN.items())
    ]


async def heartbeat(state: PlaneState) -> None:
    """Publish this worker's capability manifest every few seconds (control reads, never waits): its services,
    device and precision, the step times it measured and the options it recommends from them."""
    versions = _versions()
    # Any base model left unset is built as a random-weight demo model: say so, the UI shows a banner.
    demo = uses_demo_models(state.settings)
    while True:
        device = await asyncio.to_thread(describe)  # nvidia-smi, or torch once a task imported it
        metrics.observe_device(device)
        manifest = state.registry.manifest(
            "data",
            demo=demo,
            instance=state.executor.consumer,
            device=device.device,
            gpu_name=device.gpu_name,
            vram_bytes=device.vram_bytes,
            precision=await asyncio.to_thread(auto_precision),
            versions=versions,
            ts=time.time(),
            step_seconds=measured(),
            models=await asyncio.to_thread(statuses, state.settings),
        )
        manifest.recommended = Worker.of(manifest).recommend()
        try:
            await state.executor.bridge.heartbeat(manifest)
        except Exception as e:  # a missed beat is logged; the next one retries
            log.warning("heartbeat failed", error=repr(e))
        await asyncio.sleep(state.settings.heartbeat_seconds)


async def warm_children(state: PlaneState) -> None:
    """Start the forkserver in the background (its preload imports torch & co. for a few seconds)."""
    if not any(t.runtime.get("isolated") for t in state.registry):
        return
    started = time.monotonic()
    await childproc.warm_up_async()
    log.info("task process server ready", seconds=round(time.monotonic() - started, 2))


async def forget(state: PlaneState) -> None:
    await state.executor.bridge.forget(state.executor.consumer)


def create_app(settings: Settings) -> FastAPI:
    registry = build_registry(settings)
    childproc.start_method(PRELOAD if any(t.runtime.get("isolated") for t in registry) else [])
    return create_plane_app(
        "data",
        settings,
        registry,
        title="Biplane worker",
        background=(heartbeat, warm_children),
        on_stop=(forget,),
    )

"""What both plane processes share: the FastAPI shell with /health, /ready, /metrics and the executor."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from redis.asyncio import Redis

from common.bridge import connect
from common.executor import Executor
from common.models.graph_schema import Plane
from common.processes import METRICS_DIR_VAR
from common.registry import Registry
from common.settings import Settings
from common.storage import Storage

log = structlog.get_logger(__name__)


@dataclass
class PlaneState:
    """Everything a plane process holds; stored on app.state.plane."""

    plane: Plane
    settings: Settings
    redis: Redis
    storage: Storage
    registry: Registry
    executor: Executor
    app: FastAPI


Hook = Callable[[PlaneState], Coroutine[Any, Any, None]]


def create_plane_app(
    plane: Plane,
    settings: Settings,
    registry: Registry,
    *,
    title: str,
    background: tuple[Hook, ...] = (),
    on_stop: tuple[Hook, ...] = (),
    setup: Callable[[FastAPI, PlaneState], None] | None = None,
) -> FastAPI:
    """A FastAPI app whose lifespan runs the plane's executor (and background hooks) until shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings)
        storage = Storage(settings)
        try:
            await asyncio.to_thread(storage.ensure_bucket)
        except Exception as e:  # S3 may come up later; /ready reports it meanwhile
            log.warning("bucket check failed at start", error=repr(e))
        executor = Executor(plane, settings, redis, registry, storage)
        state = PlaneState(plane, settings, redis, storage, registry, executor, app)
        app.state.plane = state
        if setup is not None:
            setup(app, state)
        tasks = [asyncio.create_task(executor.run(), name=f"{plane}-executor")]
        tasks += [asyncio.create_task(hook(state), name=hook.__name__) for hook in background]
        log.info("plane started", plane=plane, consumer=executor.consumer, services=[t.name for t in registry])
        try:
            yield
        finally:
            executor.stop()
            for hook in on_stop:
                await hook(state)
            for t in tasks[1:]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await redis.aclose()
            log.info("plane stopped", plane=plane)

    app = FastAPI(title=title, lifespan=lifespan)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready(request: Request) -> JSONResponse:
        """Readiness: Redis and S3 answer and the executor reads its stream now (false while it recovers)."""
        st: PlaneState = request.app.state.plane
        try:
            redis_ok = bool(await asyncio.wait_for(st.redis.ping(), timeout=2))
        except Exception as e:  # any failure means not ready; the reason goes to the body
            log.warning("redis not ready", error=repr(e))
            redis_ok = False
        s3_ok = await asyncio.to_thread(st.storage.ping)
        checks = {"redis": redis_ok, "s3": s3_ok, "executor": st.executor.consuming}
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """This process's metrics, or the sum over every copy of the plane (BIPLANE_PROCESSES > 1)."""
        if METRICS_DIR_VAR not in os.environ:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return Response(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)

    return app

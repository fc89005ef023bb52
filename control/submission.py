"""What every submission route shares: the 202 answer, webhook check, idempotency, rate limit, all-or-nothing accept."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from common.estimate import Estimate, assess
from common.executor import submit
from common.models.graph_schema import GraphDocument
from common.references import check_graph
from control import metrics
from control.auth import rate_limit
from control.deps import Control
from control.egress import TargetRefused
from control.errors import ApiError
from control.uploads import Checked, delete_keys, store_files

IDEMPOTENCY_TTL = 24 * 3600  #: how long a key remembers its job (seconds)


class JobWarning(BaseModel):
    code: str = Field(description="long_job, no_worker")
    message: str


class Accepted(BaseModel):
    job_id: str = Field(alias="jobId")
    status: str
    links: dict[str, str]
    estimate_seconds: float | None = Field(alias="estimateSeconds", description="On the slowest alive workers")
    warnings: list[JobWarning] = Field(description="Accepted all the same: a long job, no worker for it")


ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"model": Accepted, "description": "Job accepted"}}


async def webhook_url(c: Control, url: str | None) -> str | None:
    """The webhook URL when control may call it (checked again at each delivery: control/egress.py)."""
    if url and (not re.match(r"^https?://[^\s/]+", url) or len(url) > 2000):
        raise ApiError(422, "invalid_request", "webhook must be an http(s) URL", pointer="/webhook")
    if url:
        try:
            await c.egress.resolve(url)
        except TargetRefused as e:
            raise ApiError(422, "webhook_refused", str(e), pointer="/webhook") from e
    return url or None


def fingerprint(route: str, payload: Any) -> str:
    return hashlib.sha256(json.dumps([route, payload], sort_keys=True, default=str).encode()).hexdigest()


def links(job_id: str) -> dict[str, str]:
    base = f"/api/jobs/{job_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "artifacts": f"{base}/artifacts",
        "cancel": f"{base}/cancel",
        "ws": "/ws",
    }


Review = tuple[Estimate | None, list[dict[str, str]]]


def accepted(job_id: str, review: Review) -> JSONResponse:
    est, warnings = review
    body: dict[str, Any] = {"jobId": job_id, "status": "queued", "links": links(job_id)}
    body |= {"estimateSeconds": round(est.seconds, 1) if est else None, "warnings": warnings}
    return JSONResponse(body, 202, headers={"Location": f"/api/jobs/{job_id}"})


async def review(c: Control, graph: GraphDocument) -> Review:
    """The job's estimate on the alive workers and its warnings (never a refusal)."""
    manifests = await c.bridge.live_manifests(3 * c.settings.heartbeat_seconds)
    return assess(graph, manifests, c.settings.estimate_warn_seconds)


async def accept(
    c: Control,
    owner: str,
    idem_key: str | None,
    fp: str,
    job_id: str,
    graph: GraphDocument,
    uploads: list[tuple[str, Checked]],
    webhook: str | None,
) -> JSONResponse:
    """References, idempotency, rate limit, uploads, record, enqueue: all or nothing."""
    await check_graph(c.store, owner, graph, job_id)
    found = await review(c, graph)
    redis = c.store.redis
    idem = c.keys.idempotency(owner, idem_key) if idem_key else None
    if idem is not None:
        if len(idem_key or "") > 200:
            raise ApiError(422, "invalid_request", "Idempotency-Key is longer than 200 characters")
        if (seen := await redis.get(idem)) is not None:
            return _replay_idempotent(json.loads(seen), fp, found)
    await rate_limit(redis, c.keys, owner, c.settings.rate_limit_per_minute)
    if idem is not None and not await redis.set(
        idem, json.dumps({"fp": fp, "jobId": job_id}), nx=True, ex=IDEMPOTENCY_TTL
    ):
        return _replay_idempotent(json.loads(await redis.get(idem)), fp, found)  # a concurrent twin won
    try:
        await store_files(c.storage, uploads)
        try:
            job = await c.store.create(graph, owner=owner, job_id=job_id, webhook=webhook)
            await submit(c.bridge, job)
        except BaseException:
            await delete_keys(c.storage, [k for k, _ in uploads])
            raise
    except BaseException:
        if idem is not None:
            await redis.delete(idem)
        raise
    metrics.JOBS_SUBMITTED.labels(graph.workflow).inc()
    return accepted(job_id, found)


def _replay_idempotent(seen: dict[str, str], fp: str, review: Review) -> JSONResponse:
    if seen["fp"] != fp:
        raise ApiError(422, "idempotency_mismatch", "this Idempotency-Key was used with a different request")
    return accepted(seen["jobId"], review)


IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key")]

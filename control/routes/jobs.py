"""Reading and steering jobs: list, get, cancel, events (SSE), artifacts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from common import paths
from common.errors import NotFound
from common.executor import request_cancel
from common.jobs import FINAL_STATUSES
from common.keys import MAX_SEQ
from common.models.artifact_schema import ArtifactMeta
from common.models.job_schema import JobRecord, JobStatus
from control.deps import Control, ControlDep, OwnerDep
from control.errors import ApiError

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

#: S3's limit on object keys.
MAX_KEY_BYTES = 1024


class JobPage(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None = Field(None, alias="nextCursor")


class ArtifactList(BaseModel):
    job_id: str = Field(alias="jobId")
    items: list[ArtifactMeta]


@router.get("", response_model=JobPage, response_model_by_alias=True, response_model_exclude_none=True)
async def list_jobs(
    c: ControlDep,
    owner: OwnerDep,
    status: JobStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^\d+(\.\d+)?$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Your jobs, newest first. Pass `nextCursor` back as `cursor` for the next page."""
    items: list[JobRecord] = []
    before = float(cursor) if cursor else None
    exhausted = False
    while len(items) < limit and not exhausted:
        batch = await c.store.page(owner, before, max(limit, 50))
        exhausted = len(batch) < max(limit, 50)
        for job in await c.store.load_many([j for j, _ in batch]):
            before = job.created_at
            if (status is None or job.status == status) and (workflow is None or job.workflow == workflow):
                items.append(job)
                if len(items) == limit:
                    break
        if not batch:
            break
    more = not exhausted and len(items) == limit
    return {"items": items, "nextCursor": repr(items[-1].created_at) if more and items else None}


@router.get("/{job_id}", response_model=JobRecord, response_model_by_alias=True)
async def get_job(job_id: str, c: ControlDep, owner: OwnerDep) -> JobRecord:
    """The job record: status, progress and every node's status, progress, output and error."""
    return await c.owned_job(job_id, owner)


@router.post("/{job_id}/cancel", status_code=202)
async def cancel_job(job_id: str, c: ControlDep, owner: OwnerDep) -> JSONResponse:
    """Ask the job to stop; a running task stops at its next step. Final jobs answer 409."""
    job = await c.owned_job(job_id, owner)
    if job.status in FINAL_STATUSES:
        raise ApiError(409, "conflict", f"job already {job.status}")
    await request_cancel(c.bridge, job_id)
    return JSONResponse({"jobId": job_id, "status": "canceling"}, 202)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def job_events(
    job_id: str,
    c: ControlDep,
    owner: OwnerDep,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """The job's events as SSE: a `snapshot` first, then every event (`id` = seq) until the job ends."""
    job = await c.owned_job(job_id, owner)
    start = since
    if start is None and last_event_id is not None and last_event_id.isdigit() and int(last_event_id) <= MAX_SEQ:
        start = int(last_event_id)
    return StreamingResponse(
        _sse(c, job, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(c: Control, job: JobRecord, since: int | None) -> AsyncIterator[str]:
    seq = await c.events.last_seq(job.job_id)
    snapshot = await c.store.load(job.job_id) or job
    yield f"event: snapshot\ndata: {snapshot.model_dump_json(by_alias=True)}\n\n"
    events = c.hub.follow(job.job_id, seq if since is None else since)
    try:
        while True:
            try:
                ev = await asyncio.wait_for(anext(events), timeout=c.settings.ws_heartbeat_seconds)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            except StopAsyncIteration:
                return
            yield f"id: {ev['seq']}\nevent: {ev['kind']}\ndata: {json.dumps(ev, separators=(',', ':'))}\n\n"
    finally:
        await events.aclose()


@router.get(
    "/{job_id}/artifacts", response_model=ArtifactList, response_model_by_alias=True, response_model_exclude_none=True
)
async def list_artifacts(job_id: str, c: ControlDep, owner: OwnerDep) -> dict[str, Any]:
    """Results with name, size, sha256, content type and a short-lived download URL."""
    await c.owned_job(job_id, owner)
    items = await asyncio.to_thread(_artifacts, c, job_id)
    return {"jobId": job_id, "items": items}


def _artifacts(c: Control, job_id: str) -> list[ArtifactMeta]:
    out = []
    for key in sorted(c.storage.list(paths.job_prefix(job_id))):
        name = paths.relative(job_id, key)
        if name is None or not paths.is_result(name):
            continue
        try:
            meta = c.storage.stat(key)
        except NotFound:
            continue  # deleted between list and stat
        out.append(meta.model_copy(update={"name": name, "url": c.storage.presigned_get(key)}))
    return out


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The artifact's bytes"}},
)
async def download_artifact(job_id: str, name: str, c: ControlDep, owner: OwnerDep) -> StreamingResponse:
    """Download one artifact through control (for clients that cannot reach S3)."""
    await c.owned_job(job_id, owner)
    key = paths.job_key(job_id, name)
    if (
        ".." in name.split("/")
        or not paths.is_result(name)
        or len(key.encode()) > MAX_KEY_BYTES
        or any(ord(ch) < 32 for ch in name)
    ):  # no object can have this name: S3 would refuse it (an error, not an answer)
        raise ApiError(404, "not_found", "no such artifact")
    try:
        meta = await asyncio.to_thread(c.storage.stat, key)
    except NotFound as e:
        raise ApiError(404, "not_found", "no such artifact") from e
    data = await asyncio.to_thread(c.storage.get_bytes, key)
    filename = name.rsplit("/", 1)[-1].replace('"', "")
    return StreamingResponse(
        iter([data]),
        media_type=meta.content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-Checksum-Sha256": meta.sha256},
    )

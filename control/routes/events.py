"""A job's events as server-sent events: GET /api/jobs/{id}/events (for curl users; the UI uses /ws)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from common.keys import MAX_SEQ
from common.models.job_schema import JobRecord
from control.deps import Control, ControlDep, OwnerDep

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


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

"""Jobs as a resource: submit a graph (POST /api/jobs), list, get, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from common.executor import request_cancel
from common.jobs import FINAL_STATUSES, new_job_id
from common.models.job_schema import JobRecord, JobStatus
from control.bodies import BoundedJsonRoute
from control.deps import ControlDep, OwnerDep
from control.errors import ApiError
from control.submission import ACCEPTED, IdemHeader, accept, fingerprint, webhook_url

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class JobPage(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None = Field(None, alias="nextCursor")


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


async def submit_graph(
    c: ControlDep,
    owner: OwnerDep,
    doc: Annotated[dict[str, Any], Body(description="A biplane.graph.v1 document")],
    webhook: Annotated[str | None, Query(max_length=2000)] = None,
    idempotency_key: IdemHeader = None,
) -> JSONResponse:
    manifests = await c.bridge.live_manifests(3 * c.settings.heartbeat_seconds)
    graph = c.planner.validate(doc, manifests)
    job_id = new_job_id()
    graph = graph.model_copy(update={"job_id": job_id})
    fp = fingerprint("jobs", [doc, webhook])
    return await accept(c, owner, idempotency_key, fp, job_id, graph, [], await webhook_url(c, webhook))


# A JSON body: its depth is checked before FastAPI parses it (BoundedJsonRoute), like every submission.
router.add_api_route(
    "",
    submit_graph,
    methods=["POST"],
    status_code=202,
    responses=ACCEPTED,
    summary="Submit a whole graph document",
    route_class_override=BoundedJsonRoute,
)

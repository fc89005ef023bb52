"""The original stack's HTTP surface, as aliases of Biplane's: `GET /api/status/{jobId}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from common.models.job_schema import JobStatus
from control.deps import ControlDep, OwnerDep

router = APIRouter(prefix="/api", tags=["compatibility"])


class NodeState(BaseModel):
    id: str
    service: str
    status: str
    progress: float


class StatusView(BaseModel):
    """What the original's status route answers: the job's status and progress (and each node's)."""

    job_id: str = Field(alias="jobId")
    workflow: str
    status: JobStatus
    progress: float
    error: str | None = None
    updated_at: float = Field(alias="updatedAt")
    nodes: list[NodeState]


@router.get("/status/{job_id}", response_model=StatusView, response_model_by_alias=True)
async def job_status(job_id: str, c: ControlDep, owner: OwnerDep) -> dict[str, Any]:
    """Alias of `GET /api/jobs/{id}` narrowed to status and progress (the original stack's status route)."""
    job = await c.owned_job(job_id, owner)
    return {
        "jobId": job.job_id,
        "workflow": job.workflow,
        "status": job.status,
        "progress": job.progress,
        "error": job.error,
        "updatedAt": job.updated_at,
        "nodes": [
            {"id": n.id, "service": n.service, "status": n.status or "pending", "progress": n.progress or 0.0}
            for n in job.graph.nodes
        ],
    }

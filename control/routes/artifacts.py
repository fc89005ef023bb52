"""A job's results: list them with short-lived URLs, or download one through control."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from common import paths
from common.errors import NotFound
from common.models.artifact_schema import ArtifactMeta
from control.deps import Control, ControlDep, OwnerDep
from control.errors import ApiError

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

#: S3's limit on object keys.
MAX_KEY_BYTES = 1024


class ArtifactList(BaseModel):
    job_id: str = Field(alias="jobId")
    items: list[ArtifactMeta]


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

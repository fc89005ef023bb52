"""The control plane's request dependencies, as Annotated aliases that routes just name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from common.bridge import Bridge
from common.events import EventLog
from common.jobs import JobStore
from common.keys import JOB_ID, Keys
from common.models.job_schema import JobRecord
from common.plane import PlaneState
from common.settings import Settings
from common.storage import Storage
from control.auth import authenticate, bearer
from control.egress import EgressPolicy
from control.errors import ApiError
from control.hub import Hub
from control.planner import Planner


@dataclass
class Control:
    """Everything routes use, built once at start-up (app.state.control)."""

    settings: Settings
    keys: Keys
    store: JobStore
    events: EventLog
    bridge: Bridge
    storage: Storage
    hub: Hub
    planner: Planner
    plane: PlaneState
    egress: EgressPolicy

    async def owned_job(self, job_id: str, owner: str) -> JobRecord:
        """The job if it exists and belongs to owner; 404 otherwise (never tell others it exists)."""
        job = await self.store.load(job_id) if JOB_ID.fullmatch(job_id) else None  # malformed: no such job
        if job is None or job.owner != owner:
            raise ApiError(404, "not_found", f"no job {job_id[:64]}")
        return job


def get_control(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


def get_owner(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    return authenticate(request.app.state.control.settings, bearer(authorization, x_api_key))


ControlDep = Annotated[Control, Depends(get_control)]
OwnerDep = Annotated[str, Depends(get_owner)]

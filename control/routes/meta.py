"""What the deployment can do: workflows and capabilities (never waits on a worker)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control import metrics
from control.capabilities import live, merged
from control.deps import ControlDep, OwnerDep
from control.planner import TEMPLATES

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/workflows")
async def workflows(owner: OwnerDep) -> dict[str, Any]:
    """The workflow templates: nodes and their dependencies."""
    return {
        "items": [
            {
                "name": name,
                "nodes": [{"id": nid, "service": svc, "after": list(deps)} for nid, (svc, deps) in nodes.items()],
            }
            for name, nodes in TEMPLATES.items()
        ]
    }


@router.get("/capabilities")
async def capabilities(c: ControlDep, owner: OwnerDep) -> dict[str, Any]:
    """Services by plane with their params JSON Schema, merged with the manifests live workers publish."""
    manifests = await live(c.bridge, c.settings.heartbeat_seconds)
    metrics.WORKERS_ALIVE.set(len(manifests))
    return merged(c.planner, manifests, c.settings.estimate_warn_seconds)

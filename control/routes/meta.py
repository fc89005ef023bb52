"""What the deployment can do: workflows and capabilities (never waits on a worker)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from common import basemodels, estimate
from control import metrics
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
    manifests = await c.bridge.live_manifests(3 * c.settings.heartbeat_seconds)
    metrics.WORKERS_ALIVE.set(len(manifests))
    services: dict[str, dict[str, Any]] = {
        name: {
            "service": name,
            "plane": svc.plane,
            "description": (svc.model.__doc__ or "").strip() if svc.model else "",
            "params": svc.model.model_json_schema(by_alias=True) if svc.model else svc.schema,
            "workers": 0,
            "demo": False,
        }
        for name, svc in c.planner.services(manifests).items()
    }
    for m in manifests:
        for cap in m.services:
            entry = services[cap.service]
            entry["workers"] += 1
            entry["demo"] = entry["demo"] or cap.demo
            entry["description"] = entry["description"] or cap.description
    workers = [
        m.model_dump(by_alias=True, exclude={"services"}) | {"services": [s.service for s in m.services]}
        for m in manifests
    ]
    return {
        "services": sorted(services.values(), key=lambda s: (s["plane"], s["service"])),
        "workers": workers,
        # Per service, the recommendation of the slowest alive worker offering it: fits whichever takes the job.
        "recommended": estimate.recommended([estimate.Worker.of(m) for m in manifests if m.plane == "data"]),
        "estimateWarnSeconds": c.settings.estimate_warn_seconds,
        # train_lora's baseModel: the first is the default; workers' `models` say what each resolves to there.
        "baseModels": [b.public() for b in basemodels.base_models(c.settings)],
        "workersAlive": len(manifests),
        "demo": any(m.demo for m in manifests),
        "warning": None if manifests else "no worker is alive: data-plane jobs will wait in the queue",
    }

"""The merged capability manifest: services by plane with their params JSON Schema, and the live workers.

What `GET /api/capabilities` answers and the `get_manifest` service (control/tasks/manifest.py) records
into a job's outputs."""

from __future__ import annotations

from typing import Any

from common import basemodels, estimate
from common.bridge import Bridge
from common.models.manifest_schema import CapabilityManifest
from control.planner import Planner


async def live(bridge: Bridge, heartbeat_seconds: float) -> list[CapabilityManifest]:
    """The manifests of the workers whose heartbeat is recent (three beats)."""
    return await bridge.live_manifests(3 * heartbeat_seconds)


def merged(planner: Planner, manifests: list[CapabilityManifest], estimate_warn_seconds: float) -> dict[str, Any]:
    """Every service a graph may name, merged with what the alive workers say of themselves."""
    services: dict[str, dict[str, Any]] = {
        name: {
            "service": name,
            "plane": svc.plane,
            "description": (svc.model.__doc__ or "").strip() if svc.model else "",
            "params": svc.model.model_json_schema(by_alias=True) if svc.model else svc.schema,
            "workers": 0,
            "demo": False,
        }
        for name, svc in planner.services(manifests).items()
    }
    for m in manifests:
        for cap in m.services:
            entry = services[cap.service]
            entry["workers"] += 1
            entry["demo"] = entry["demo"] or cap.demo
            entry["description"] = entry["description"] or cap.description
    workers = [
        m.model_dump(by_alias=True, mode="json", exclude={"services"}) | {"services": [s.service for s in m.services]}
        for m in manifests
    ]
    return {
        "services": sorted(services.values(), key=lambda s: (s["plane"], s["service"])),
        "workers": workers,
        # Per service, the recommendation of the slowest alive worker offering it: fits whichever takes the job.
        "recommended": estimate.recommended([estimate.Worker.of(m) for m in manifests if m.plane == "data"]),
        "estimateWarnSeconds": estimate_warn_seconds,
        # train_lora's baseModel: the first is the default; workers' `models` say what each resolves to there.
        "baseModels": [b.public() for b in basemodels.base_models(planner.settings)],
        "workersAlive": len(manifests),
        "demo": any(m.demo for m in manifests),
        "warning": None if manifests else "no worker is alive: data-plane jobs will wait in the queue",
    }

"""get_manifest (the original's `capabilities.getManifest`): the merged capability manifest into the outputs."""

from __future__ import annotations

import time
from typing import Any

from common.bridge import Bridge, connect
from common.context import TaskContext
from common.keys import Keys
from common.params import GetManifestParams
from common.registry import Registry
from control.capabilities import live, merged
from control.planner import Planner

registry = Registry()


@registry.builtin("get_manifest", outputs=("services", "workers", "workersAlive", "recordedAt"))
async def get_manifest(ctx: TaskContext, p: GetManifestParams) -> dict[str, Any]:
    """What GET /api/capabilities answers, as the node's output: a graph records what ran it."""
    from control.app import build_registry  # the control plane's registry (plugins included); app imports tasks

    s = ctx.settings
    redis = connect(s)
    try:
        manifests = await live(Bridge(redis, Keys(s.key_prefix), s), s.heartbeat_seconds)
    finally:
        await redis.aclose()
    manifest = merged(Planner(s, build_registry(s)), manifests, s.estimate_warn_seconds)
    if not p.include_params:
        for service in manifest["services"]:
            service.pop("params")
    return manifest | {"recordedAt": time.time()}

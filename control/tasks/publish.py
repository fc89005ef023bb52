"""publish_artifacts: write jobs/<id>/manifest.json listing every artifact with its sha256."""

from __future__ import annotations

import json
import time
from typing import Any

from common import paths
from common.context import TaskContext
from common.params import PublishArtifactsParams
from common.registry import Registry

registry = Registry()


@registry.builtin("publish_artifacts", outputs=("manifest",))
def publish_artifacts(ctx: TaskContext, p: PublishArtifactsParams) -> dict[str, Any]:
    """List every result object of the job with size and sha256 into jobs/<id>/manifest.json."""
    assert ctx.storage is not None
    manifest_key = paths.manifest_key(ctx.job_id)
    artifacts = []
    for key in sorted(ctx.storage.list(paths.job_prefix(ctx.job_id))):
        rel = paths.relative(ctx.job_id, key)
        if rel is None or key == manifest_key or not paths.is_result(rel):
            continue
        meta = ctx.storage.stat(key)
        artifacts.append({**meta.model_dump(by_alias=True, mode="json", exclude_none=True), "name": rel})
    body = {"jobId": ctx.job_id, "createdAt": time.time(), "artifacts": artifacts}
    meta = ctx.storage.put_bytes(manifest_key, json.dumps(body, indent=2).encode(), "application/json")
    ctx.emit(
        {
            "kind": "artifact",
            "nodeId": ctx.node_id,
            "artifact": {**meta.model_dump(by_alias=True, mode="json"), "name": paths.MANIFEST},
        }
    )
    return {"manifest": meta.model_dump(by_alias=True, mode="json"), "artifacts": len(artifacts)}

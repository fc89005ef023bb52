"""A plugin service written like a future one would be: it reads whatever object its params or the job context
name, with no ownership check of its own (loaded with BIPLANE_TASK_MODULES=tests.security.plugin)."""

from __future__ import annotations

from typing import Any

import redis
from pydantic import BaseModel

from common.context import TaskContext
from common.errors import TaskInputError
from common.registry import Registry

registry = Registry()


class ReadParams(BaseModel):
    source: Any = None  #: a key, {"key": ...}, {"job": ...} (its first .txt), or None: the context's `source`


def _key(ctx: TaskContext, source: Any) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, dict) and isinstance(source.get("key"), str):
        return str(source["key"])
    if isinstance(source, dict) and isinstance(source.get("job"), str):
        assert ctx.storage is not None
        found = sorted(k for k in ctx.storage.list(f"jobs/{source['job']}/") if k.endswith(".txt"))
        if found:
            return found[0]
    raise TaskInputError(f"nothing to read in {source!r}")


@registry.task("test.read", plane="data", params=ReadParams, outputs=("text",))
def read(ctx: TaskContext, p: ReadParams) -> dict:
    """Read one object and return its text; counts its runs in Redis (reads:<job>)."""
    r = redis.Redis.from_url(ctx.settings.redis_url)
    try:
        r.incr(f"{ctx.settings.key_prefix}:test:reads:{ctx.job_id}")
    finally:
        r.close()
    assert ctx.storage is not None
    key = _key(ctx, p.source if p.source is not None else ctx.job_inputs.get("source"))
    return {"text": ctx.storage.get_bytes(key).decode()}

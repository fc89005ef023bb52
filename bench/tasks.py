"""No-op services for the hybrid throughput benchmark (loaded with BIPLANE_TASK_MODULES=bench.tasks)."""

from __future__ import annotations

from pydantic import BaseModel

from common.context import TaskContext
from common.registry import Registry

registry = Registry()


class Nothing(BaseModel):
    pass


@registry.task("bench.control", plane="control", params=Nothing)
async def control_noop(ctx: TaskContext, p: Nothing) -> dict[str, int]:
    """Control-plane no-op."""
    return {"ok": 1}


@registry.task("bench.data", plane="data", params=Nothing)
async def data_noop(ctx: TaskContext, p: Nothing) -> dict[str, int]:
    """Data-plane no-op."""
    return {"ok": 1}

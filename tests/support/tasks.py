"""Test services for both planes, loaded into real processes with BIPLANE_TASK_MODULES=tests.support.tasks.

Every run increments a Redis counter runs:<job>:<node>, so tests can assert how often a node ran.
"""

from __future__ import annotations

import os
import time

import redis
from pydantic import BaseModel, Field

from common.context import TaskContext
from common.errors import TaskInputError
from common.registry import Registry

registry = Registry()


class StepParams(BaseModel):
    steps: int = Field(3, ge=0, le=10_000)
    step_seconds: float = Field(0.01, ge=0, le=10)
    value: int = 1
    fail: str | None = None  # "input" or "crash"
    artifact: bool = False  # store result.txt in S3 at the end (exercises uploads)


def _count_run(ctx: TaskContext) -> int:
    r = redis.Redis.from_url(ctx.settings.redis_url)
    try:
        return int(r.incr(f"{ctx.settings.key_prefix}:test:runs:{ctx.job_id}:{ctx.node_id}"))
    finally:
        r.close()


def _steps(ctx: TaskContext, p: StepParams) -> dict:
    _count_run(ctx)
    if p.fail == "input":
        raise TaskInputError("bad input on purpose")
    if p.fail == "crash":
        raise RuntimeError("crash on purpose")
    for i in range(1, p.steps + 1):
        ctx.check_cancel()
        time.sleep(p.step_seconds)
        ctx.progress(step=i, total_steps=p.steps, loss=1.0 / i)
    total = p.value + sum(int(out.get("value", 0)) for out in ctx.inputs.values())
    out = {"value": total, "inputs": sorted(ctx.inputs), "pid": os.getpid()}
    if p.artifact:
        out["result"] = ctx.put_artifact("result.txt", str(total).encode(), "text/plain").model_dump(by_alias=True)
    return out


@registry.task("test.prepare", plane="control", params=StepParams, outputs=("value",))
def prepare(ctx: TaskContext, p: StepParams) -> dict:
    """Control-plane test step."""
    return _steps(ctx, p)


@registry.task("test.work", plane="data", params=StepParams, outputs=("value",))
def work(ctx: TaskContext, p: StepParams) -> dict:
    """Data-plane test step: sleeps through steps, reporting progress."""
    return _steps(ctx, p)


@registry.task("test.publish", plane="control", params=StepParams, outputs=("value",))
async def publish(ctx: TaskContext, p: StepParams) -> dict:
    """Async control-plane step that sums its inputs."""
    import asyncio

    return await asyncio.to_thread(_steps, ctx, p)


class BlockParams(BaseModel):
    phase: str = "caching"
    seconds: float = Field(600, ge=0, le=3600)


def _block(ctx: TaskContext, p: BlockParams) -> dict:
    """Report a phase, then go silent without ever checking cancel (a hung driver call, a stuck download)."""
    _count_run(ctx)
    ctx.phase(p.phase)
    time.sleep(p.seconds)
    return {"slept": p.seconds}


registry.task("test.block", plane="data", params=BlockParams, isolated=True, silence_seconds=2)(_block)
registry.task("test.control_block", plane="control", params=BlockParams, silence_seconds=2)(_block)


class HogParams(BaseModel):
    megabytes: int = Field(256, ge=1, le=65_536)


@registry.task("test.hog", plane="data", params=HogParams, isolated=True, memory_options=("megabytes",))
def hog(ctx: TaskContext, p: HogParams) -> dict:
    """Allocate and touch `megabytes` of memory (past the worker's task memory limit: out of memory)."""
    ctx.phase("allocating")
    block = bytearray(p.megabytes * 1024 * 1024)
    block[::4096] = b"\1" * len(block[::4096])
    return {"allocated": len(block)}


registry.task("test.control_wait", plane="control", params=BlockParams)(_block)

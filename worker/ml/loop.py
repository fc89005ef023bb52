"""The training loop shared by the training tasks: steps, progress + ETA, checkpoints, cancel, metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.childproc import forward
from common.context import TaskContext


def optimizer_step(loss: Any, optimizer: Any, scaler: Any, params: list[Any], max_norm: float = 1.0) -> float:
    """Backward through the (fp16-)scaler, clip gradients, step and clear them; returns the loss as a float."""
    import torch

    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


@dataclass
class LoopResult:
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None

    @property
    def median_step_seconds(self) -> float | None:
        if not self.step_seconds:
            return None
        ordered = sorted(self.step_seconds)
        return ordered[len(ordered) // 2]


def run(
    ctx: TaskContext,
    *,
    total: int,
    start: int,
    step: Callable[[], float],
    checkpoint: Callable[[int], object] | None = None,
    checkpoint_every: int = 0,
    after_step: Callable[[int], None] | None = None,
) -> LoopResult:
    """Run steps start+1..total. Between steps: cancel check; on cancel (or a graceful stop, which sets the
    same flag) save a checkpoint first so the next attempt resumes where this one stopped."""
    result = LoopResult()
    saved = start
    recent: list[float] = []
    for i in range(start + 1, total + 1):
        if ctx.canceled:
            if checkpoint is not None and checkpoint_every > 0 and i - 1 > saved:
                checkpoint(i - 1)
            ctx.check_cancel()
        began = time.perf_counter()
        loss = step()
        seconds = time.perf_counter() - began
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {i}; lower the learning rate")
        result.losses.append(loss)
        result.step_seconds.append(seconds)
        forward("worker.metrics:train_step", ctx.service, seconds)
        if checkpoint is not None and checkpoint_every > 0 and i % checkpoint_every == 0 and i < total:
            checkpoint(i)
            saved = i
        if after_step is not None:
            after_step(i)
        recent = [*recent[-19:], time.perf_counter() - began]  # ETA from the last 20 steps, samples included
        eta = round(sum(recent) / len(recent) * (total - i), 1)
        ctx.progress(step=i, total_steps=total, loss=loss, eta_seconds=eta)
    return result

"""Training checkpoints in S3 (jobs/<job>/<node>/checkpoints/): trainable weights, optimizer, step, RNG states.

A re-run of the same node (another attempt, another worker) resumes from the latest one.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common import paths
from common.context import TaskContext

if TYPE_CHECKING:
    import torch

PREFIX = f"{paths.CHECKPOINTS}/"
KEEP = 2  # the newest two: one may be half-written when a worker dies mid-upload
_STEP = re.compile(r"step-(\d{8})\.pt$")


def name(step: int) -> str:
    return f"{PREFIX}step-{step:08d}.pt"


def _steps(ctx: TaskContext) -> list[tuple[int, str]]:
    assert ctx.storage is not None
    found = []
    for key in ctx.storage.list(ctx.artifact_key(PREFIX)):
        m = _STEP.search(key)
        if m:
            found.append((int(m.group(1)), key))
    return sorted(found)


def save(ctx: TaskContext, step: int, state: dict[str, Any]) -> str:
    """Upload a checkpoint (torch.save of tensors and plain values) and prune older ones."""
    import torch

    assert ctx.storage is not None
    buf = io.BytesIO()
    torch.save({**state, "step": step}, buf)
    key = ctx.artifact_key(name(step))
    ctx.storage.put_bytes(key, buf.getvalue(), "application/octet-stream")
    for _, old in _steps(ctx)[:-KEEP]:
        ctx.storage.delete(old)
    ctx.log(f"checkpoint saved at step {step}")
    return key


def latest(ctx: TaskContext) -> dict[str, Any] | None:
    """The newest checkpoint that loads, or None. weights_only: a checkpoint never runs code when loaded."""
    import torch

    assert ctx.storage is not None
    for step, key in reversed(_steps(ctx)):
        data = ctx.storage.get_bytes(key)
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, ValueError) as e:  # truncated upload: fall back to the one before
            ctx.log(f"checkpoint {key} does not load ({e}); trying an older one", level="warning")
            continue
        ctx.log(f"resuming from the checkpoint at step {step}")
        return dict(state)
    return None


def trainable_state(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (LoRA layers, a speaker vector...), detached to CPU, keyed module.index/name."""
    return {
        f"{i}/{n}": p.detach().to("cpu", copy=True)
        for i, m in enumerate(modules)
        for n, p in m.named_parameters()
        if p.requires_grad
    }


def load_trainable(state: dict[str, torch.Tensor], *modules: torch.nn.Module) -> None:
    """Copy saved trainable parameters back in place; every trainable parameter must be present."""
    import torch

    with torch.no_grad():
        for i, m in enumerate(modules):
            for n, p in m.named_parameters():
                if not p.requires_grad:
                    continue
                key = f"{i}/{n}"
                if key not in state:
                    raise ValueError(f"checkpoint lacks {key}: it belongs to another model or configuration")
                p.copy_(state[key].to(p.device, p.dtype))


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume(ctx: TaskContext, trainer: Any, probe: Callable[[], float | None]) -> tuple[int, float | None]:
    """Load the latest checkpoint into trainer; returns (start step, probe loss before any training).

    probe() measures the baseline loss (only when no checkpoint carries it)."""
    state = latest(ctx)
    if state is None:
        return 0, probe()
    trainer.load_state(state)
    saved = state.get("probeStart")
    return int(state["step"]), float(saved) if saved is not None else probe()

"""A stand-in data-plane `train_lora` for UI tests while the real one (worker/tasks) does not exist yet.

Loaded into a real worker with BIPLANE_TASK_MODULES=tests.support.fake_lora. It speaks the real task contract:
progress with step/total/loss, cancel checks, a PNG preview per `sampleEvery` steps and the LoRA file.
FAKE_LORA_STEP_SECONDS (read when the task runs) sets the time per step.
"""

from __future__ import annotations

import io
import os
import time

from PIL import Image

from common.context import TaskContext
from common.params import TrainLoraParams
from common.registry import Registry

registry = Registry()


def _preview(step: int, size: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (40 + 20 * step % 200, 90, 160)).save(out, "PNG")
    return out.getvalue()


@registry.task("train_lora", plane="data", params=TrainLoraParams, outputs=("lora",))
def train_lora(ctx: TaskContext, p: TrainLoraParams) -> dict:
    """Test double of LoRA training: same events and outputs, no model."""
    step_seconds = float(os.environ.get("FAKE_LORA_STEP_SECONDS", "0.2"))
    every = p.sample_every or p.steps
    for step in range(1, p.steps + 1):
        ctx.check_cancel()
        time.sleep(step_seconds)
        ctx.progress(step=step, total_steps=p.steps, loss=1.0 / step, eta_seconds=(p.steps - step) * step_seconds)
        if step % every == 0 or step == p.steps:
            ctx.put_artifact(
                f"samples/step-{step:05d}.png", _preview(step, min(p.resolution, 128)), "image/png", preview=True
            )
    ctx.log(f"trained {p.steps} steps at rank {p.rank}")
    meta = ctx.put_artifact(
        "pytorch_lora_weights.safetensors", b"fake-lora-" + os.urandom(64), "application/octet-stream"
    )
    return {"lora": meta.model_dump(by_alias=True, mode="json")}

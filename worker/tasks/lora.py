"""train_lora: LoRA on the SD UNet from the prepared images and prompt; previews, checkpoints, resume."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common.context import TaskContext
from common.errors import TaskInputError
from common.params import TrainLoraParams
from common.registry import Registry
from worker.tasks import inputs, training

registry = Registry()

#: Seed of preview/sample images, fixed so previews of one run are comparable.
SAMPLE_SEED = 0


def _images(ctx: TaskContext) -> tuple[list[bytes], str]:
    keys = inputs.value(ctx, "images")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise TaskInputError("train_lora needs `images`: a non-empty list of prepared PNG keys")
    prompt = inputs.value(ctx, "prompt", "")
    if not isinstance(prompt, str):
        raise TaskInputError("`prompt` must be a string")
    return [inputs.read(ctx, k, "image") for k in keys], prompt


@registry.builtin(
    "train_lora",
    outputs=("lora", "sample", "steps", "loss", "device", "peakMemoryBytes"),
    gpu=True,
    isolated=True,
    memory_options=("resolution", "batchSize"),
)
def train_lora(ctx: TaskContext, p: TrainLoraParams) -> dict[str, Any]:
    """Cache, train with previews and checkpoints, sample, upload (the service is described by its params)."""
    from worker.ml.lora import WEIGHTS_NAME, LoraTrainer, png_bytes

    ctx.phase("loading-model")
    pngs, prompt = _images(ctx)
    run = training.begin(ctx, p.precision, "sd_model")
    trainer = LoraTrainer(run.models.sd, p, run.device, pngs, prompt)
    ctx.phase("caching")
    trainer.cache_inputs(lambda i, n: ctx.phase("caching", i / n))

    def probe() -> float | None:
        if not p.baseline:
            return None
        ctx.phase("baseline")
        return trainer.probe_loss(on_part=lambda i, n: ctx.phase("baseline", i / n))

    def sample(what: str) -> bytes:
        ctx.phase(what)
        return png_bytes(trainer.sample(p.sample_steps, SAMPLE_SEED, lambda i, n: ctx.phase(what, i / n)))

    def preview(step: int) -> None:
        if p.sample_every and step % p.sample_every == 0 and step < p.steps:
            ctx.put_artifact(f"previews/step-{step:06d}.png", sample("preview"), "image/png", preview=True)
            ctx.phase("training")

    trained = run.run(trainer, p, probe, after_step=preview)
    final = sample("sampling")
    ctx.phase("uploading")
    with tempfile.TemporaryDirectory() as tmp:
        weights = trainer.save_lora(Path(tmp))
        ctx.check_cancel()  # canceled during the final sample: leave no final artifact
        lora = ctx.put_artifact(WEIGHTS_NAME, weights, "application/octet-stream")
    sample_meta = ctx.put_artifact("sample.png", final, "image/png")
    return run.result(
        trained,
        p,
        p.resolution,
        lora=lora.model_dump(by_alias=True, mode="json"),
        sample=sample_meta.model_dump(by_alias=True, mode="json"),
        trainableParams=trainer.trainable_count,
    )

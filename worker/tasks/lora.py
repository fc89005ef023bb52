"""train_lora: LoRA on the SD UNet from the prepared images and prompt; previews, checkpoints, resume."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common import basemodels
from common.basemodels import BaseModelSpec
from common.context import TaskContext
from common.errors import TaskInputError
from common.params import TrainLoraParams
from common.registry import Registry
from worker.tasks import inputs, training

registry = Registry()

#: Seed of preview/sample images, fixed so previews of one run are comparable.
SAMPLE_SEED = 0


def with_trigger(text: str, trigger: str | None) -> str:
    """text with the trigger word in front (once: not again when text already starts with it)."""
    if not trigger or text == trigger or text.startswith((trigger + " ", trigger + ",")):
        return text
    return f"{trigger}, {text}" if text else trigger


def texts(prompt: str, captions: list[str] | None, count: int, trigger: str | None) -> list[str]:
    """The training text of each image: its caption, or the prompt where it has none; trigger word in front."""
    if captions is not None and len(captions) != count:
        raise TaskInputError(f"`captions` has {len(captions)} entries for {count} images")
    return [with_trigger((c or "").strip() or prompt, trigger) for c in (captions or [""] * count)]


def base_model(ctx: TaskContext, name: str | None) -> BaseModelSpec:
    found = basemodels.find(ctx.settings, name)
    if found is None:
        names = ", ".join(b.name for b in basemodels.base_models(ctx.settings))
        raise TaskInputError(f"no base model {name!r} on this worker; one of {names}")
    return found


def reference(used: dict[str, Any]) -> str:
    """The exact base model as LoRA metadata names it: hub id @ commit, a directory, or demo."""
    return f"{used['repoId']}@{used['revision']}" if used.get("repoId") else str(used["reference"])


def _images(ctx: TaskContext) -> tuple[list[bytes], list[str] | None, str]:
    keys = inputs.value(ctx, "images")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise TaskInputError("train_lora needs `images`: a non-empty list of prepared PNG keys")
    prompt = inputs.value(ctx, "prompt", "")
    if not isinstance(prompt, str):
        raise TaskInputError("`prompt` must be a string")
    captions = inputs.value(ctx, "captions")
    if captions is not None and (not isinstance(captions, list) or not all(isinstance(c, str) for c in captions)):
        raise TaskInputError("`captions` must be a list of strings, one per image")
    return [inputs.read(ctx, k, "image") for k in keys], captions, prompt


@registry.builtin(
    "train_lora",
    outputs=("lora", "loraKohya", "baseModel", "sample", "steps", "loss", "device", "peakMemoryBytes"),
    gpu=True,
    isolated=True,
    memory_options=("resolution", "batchSize"),
)
def train_lora(ctx: TaskContext, p: TrainLoraParams) -> dict[str, Any]:
    """Cache, train with previews and checkpoints, sample, upload (the service is described by its params)."""
    from worker.ml.lora import WEIGHTS_NAME, LoraTrainer, png_bytes

    ctx.phase("loading-model")
    pngs, captions, prompt = _images(ctx)
    per_image = texts(prompt, captions, len(pngs), p.trigger_word)
    base = base_model(ctx, p.base_model)
    run = training.begin(ctx, p.precision, base=base)
    setting = "sdxl_model" if base.family == "sdxl" else "sd_model"
    base_dir, used = run.models.paths[setting], run.models.used[setting]
    sample_prompt = with_trigger(prompt, p.trigger_word)
    trainer = LoraTrainer(base_dir, p, run.device, pngs, per_image, sample_prompt, base.family)
    if trainer.optimizer_name != p.optimizer:
        ctx.log(f"{p.optimizer} needs bitsandbytes on a CUDA worker; training with {trainer.optimizer_name}")
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
        weights, kohya = trainer.save_lora(Path(tmp), reference(used), f"biplane-{ctx.job_id}", base.name)
        ctx.check_cancel()  # canceled during the final sample: leave no final artifact
        lora = ctx.put_artifact(WEIGHTS_NAME, weights, "application/octet-stream")
        lora_kohya = ctx.put_artifact(kohya.name, kohya, "application/octet-stream")
    sample_meta = ctx.put_artifact("sample.png", final, "image/png")
    return run.result(
        trained,
        p,
        p.resolution,
        lora=lora.model_dump(by_alias=True, mode="json"),
        loraKohya=lora_kohya.model_dump(by_alias=True, mode="json"),
        sample=sample_meta.model_dump(by_alias=True, mode="json"),
        trainableParams=trainer.trainable_count,
        optimizer=trainer.optimizer_name,
        baseModel={"name": base.name, "family": base.family, **used},
    )

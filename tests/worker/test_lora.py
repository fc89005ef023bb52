"""train_lora in-process on the demo model: the loss falls, previews land in S3, the LoRA loads and changes images."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from common.params import TrainLoraParams
from tests.support.media import put_images
from tests.worker.conftest import Run
from worker.ml.demo_models import DemoModels

pytestmark = pytest.mark.ml

PROMPT = "a photo of sks toy"


def _fixed_batch_loss(pipe: Any, pngs: list[bytes], seed: int = 7) -> float:
    """Noise-prediction loss of pipe.unet on the training images with seeded noise and spread timesteps."""
    import torch
    from diffusers import DDPMScheduler

    from worker.ml.lora import images_to_tensor, noise_loss

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        latents = pipe.vae.encode(images_to_tensor(pngs, 64)).latent_dist.mean * pipe.vae.config.scaling_factor
        latents = latents.repeat_interleave(3, 0)
        embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.tensor([150, 500, 850]).repeat(len(pngs))
        return float(noise_loss(pipe.unet, scheduler, latents, embeds.expand(len(latents), -1, -1), noise, timesteps))


def _image(pipe: Any) -> np.ndarray:
    import torch

    out = pipe(PROMPT, num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(0))
    return np.asarray(out.images[0], dtype=np.float32)


def test_lora_trains_previews_and_loads_into_a_fresh_pipeline(run: Run, demo_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from worker.tasks.lora import train_lora

    keys = put_images(run.storage, run.job_id)
    p = TrainLoraParams(
        steps=20,
        rank=8,
        alpha=16,
        learning_rate=1e-2,
        resolution=64,
        sample_every=10,
        checkpoint_every=0,
        sample_steps=2,
    )
    # data-only graph: the images and prompt come from the job context
    out = train_lora(run.ctx("train", "train_lora", context={"images": keys, "prompt": PROMPT}), p)

    assert out["steps"] == 20 and out["startStep"] == 0 and out["device"] == "cpu" and out["demo"] is True
    assert out["probeLoss"]["end"] <= 0.9 * out["probeLoss"]["start"], out["probeLoss"]
    assert out["peakMemoryBytes"] > 50 * 2**20
    progress = run.steps()
    assert [e["step"] for e in progress] == list(range(1, 21))
    assert all(e["totalSteps"] == 20 and e["loss"] > 0 and e["etaSeconds"] >= 0 for e in progress)

    previews = run.kinds("preview")
    assert [e["artifact"]["key"] for e in previews] == [f"jobs/{run.job_id}/train/previews/step-000010.png"]
    for e in previews:
        with Image.open(io.BytesIO(run.storage.get_bytes(e["artifact"]["key"]))) as im:
            assert im.format == "PNG" and im.size == (64, 64)
    artifacts = {e["artifact"]["name"]: e["artifact"] for e in run.kinds("artifact")}
    assert set(artifacts) == {"pytorch_lora_weights.safetensors", "sample.png"}
    assert out["lora"]["key"] == f"jobs/{run.job_id}/train/pytorch_lora_weights.safetensors"

    # The saved file, in a fresh pipeline: it loads, it lowers the loss on a fixed batch, it changes the image.
    lora_dir = tmp_path / "lora"
    run.storage.download(out["lora"]["key"], lora_dir / "pytorch_lora_weights.safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(DemoModels(demo_dir).sd, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pngs = [run.storage.get_bytes(k) for k in keys]
    base_loss, base_image = _fixed_batch_loss(pipe, pngs), _image(pipe)
    pipe.load_lora_weights(str(lora_dir))
    lora_loss, lora_image = _fixed_batch_loss(pipe, pngs), _image(pipe)
    assert lora_loss <= 0.9 * base_loss, (base_loss, lora_loss)
    assert np.abs(lora_image - base_image).max() > 2.0  # 8-bit pixel values
    # ...and reproduces the task's own final sample (same seed and steps): alpha/rank survived the file format.
    with Image.open(io.BytesIO(run.storage.get_bytes(out["sample"]["key"]))) as im:
        assert np.abs(np.asarray(im, dtype=np.float32) - lora_image).max() <= 2.0

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
    assert out["baseModel"] == {
        "name": "sd15",
        "family": "sd15",
        "setting": "BIPLANE_SD_MODEL",
        "reference": "demo",
        "repoId": None,
        "revision": None,
    }
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
    assert set(artifacts) == {"pytorch_lora_weights.safetensors", "lora_kohya.safetensors", "sample.png"}
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

    # The kohya/A1111 file: kohya keys and metadata; diffusers reads that format too and gives the same image.
    from safetensors import safe_open

    kohya_dir = tmp_path / "kohya"
    run.storage.download(out["loraKohya"]["key"], kohya_dir / "lora_kohya.safetensors")
    with safe_open(str(kohya_dir / "lora_kohya.safetensors"), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
        alphas = {float(f.get_tensor(k)) for k in keys if k.endswith(".alpha")}
    assert all(
        k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys
    )
    with safe_open(str(lora_dir / "pytorch_lora_weights.safetensors"), "pt") as f:
        modules = len(list(f.keys())) // 2  # a down and an up weight each
    assert len(keys) == 3 * modules and alphas == {16.0}  # each down/up/alpha
    assert (
        meta["ss_network_dim"] == "8" and meta["ss_network_alpha"] == "16" and meta["ss_base_model_version"] == "sd_v1"
    )
    assert meta["ss_max_train_steps"] == "20" and meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["ss_sd_model_name"] == "demo" and meta["ss_training_comment"] == PROMPT
    kohya_pipe = StableDiffusionPipeline.from_pretrained(DemoModels(demo_dir).sd, local_files_only=True)
    kohya_pipe.set_progress_bar_config(disable=True)
    kohya_pipe.load_lora_weights(str(kohya_dir), weight_name="lora_kohya.safetensors")
    assert np.abs(_image(kohya_pipe) - lora_image).max() <= 2.0


def test_per_image_captions_reach_the_trainer_as_distinct_embeddings(run: Run) -> None:
    import torch

    from common.params import TrainLoraParams
    from worker.ml.device import pick
    from worker.ml.lora import LoraTrainer
    from worker.ml.models import resolve
    from worker.tasks.lora import _images, texts

    keys = put_images(run.storage, run.job_id, n=3, size=32)
    context = {"images": keys, "prompt": PROMPT, "captions": ["a red toy", "", "a red toy"]}
    ctx = run.ctx("train", "train_lora", context=context)
    p = TrainLoraParams(resolution=32, trigger_word="sks")
    pngs, captions, prompt = _images(ctx)
    per_image = texts(prompt, captions, len(pngs), p.trigger_word)
    assert per_image == ["sks, a red toy", "sks, a photo of sks toy", "sks, a red toy"]  # "" = the prompt
    trainer = LoraTrainer(resolve(run.settings, "sd_model").sd, p, pick("fp32"), pngs, per_image, "sks")
    trainer.cache_inputs()
    assert trainer.embeds is not None
    embeds = trainer.embeds.hidden
    assert embeds.shape[0] == 3
    assert not torch.equal(embeds[0], embeds[1]) and torch.equal(embeds[0], embeds[2])
    text: Any = trainer.family
    ids = text.tokenizer(["sks, a red toy"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = text.text_encoder(ids, return_dict=False)[0]
    assert torch.allclose(embeds[0], expected)
    with pytest.raises(Exception, match="2 entries for 3 images"):
        texts(prompt, ["a", "b"], 3, None)


def test_trigger_word_is_prepended_once() -> None:
    from worker.tasks.lora import with_trigger

    assert with_trigger("a dog", "sks") == "sks, a dog"
    assert with_trigger("sks dog on grass", "sks") == "sks dog on grass"
    assert with_trigger("sks, a dog", "sks") == "sks, a dog"
    assert with_trigger("sksdog", "sks") == "sks, sksdog"
    assert with_trigger("", "sks") == "sks" and with_trigger("a dog", None) == "a dog"

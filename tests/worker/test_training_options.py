"""train_lora's GPU-grade options on the demo model: gradient checkpointing changes nothing but memory, min-SNR
and offset noise do what they say, adamw8bit falls back to AdamW off CUDA, crop vs resize of the images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.params import TrainLoraParams
from tests.support.media import training_png
from tests.worker.conftest import Run

pytestmark = pytest.mark.ml


def _trainer(run: Run, **options: object) -> object:
    from worker.ml.device import pick
    from worker.ml.lora import LoraTrainer
    from worker.ml.models import resolve

    p = TrainLoraParams(resolution=32, rank=4, learning_rate=1e-2, seed=3, **options)  # type: ignore[arg-type]
    pngs = [training_png(i, 32) for i in range(2)]
    trainer = LoraTrainer(resolve(run.settings, "sd_model").sd, p, pick("fp32"), pngs, ["a", "b"], "a")
    trainer.cache_inputs()
    return trainer


def test_gradient_checkpointing_trains_the_same_lora(run: Run) -> None:
    import torch

    plain, checkpointed = _trainer(run), _trainer(run, gradient_checkpointing=True)
    assert checkpointed.unet.is_gradient_checkpointing and not plain.unet.is_gradient_checkpointing  # type: ignore[attr-defined]
    losses = [(plain.step(), checkpointed.step()) for _ in range(3)]  # type: ignore[attr-defined]
    assert all(abs(a - b) < 1e-5 for a, b in losses), losses
    for a, b in zip(plain.params, checkpointed.params, strict=True):  # type: ignore[attr-defined]
        assert torch.allclose(a, b, atol=1e-5)


def test_offset_noise_min_snr_and_the_optimizer_choice(run: Run) -> None:
    import torch
    from diffusers import DDPMScheduler

    from worker.ml.lora import min_snr_weights, offset_noise

    gen = torch.Generator().manual_seed(0)
    plain = offset_noise(torch.Size((64, 4, 8, 8)), 0.0, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(plain, torch.randn((64, 4, 8, 8), generator=gen))
    shifted = offset_noise(torch.Size((64, 4, 8, 8)), 1.0, torch.Generator().manual_seed(0), "cpu")
    per_channel = shifted.mean(dim=(2, 3))  # the offset is one constant per sample and channel
    assert per_channel.std() > 3 * plain.mean(dim=(2, 3)).std()

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.tensor([0, 100, 500, 999])
    snr = scheduler.alphas_cumprod[t] / (1 - scheduler.alphas_cumprod[t])
    w = min_snr_weights(scheduler, t, 5.0, v_prediction=False)
    assert torch.allclose(w, torch.clamp(snr, max=5.0) / snr)
    assert w[0] < 0.01 and w[-1] == 1.0  # easy, low-noise steps count less; noisy ones fully
    assert torch.allclose(min_snr_weights(scheduler, t, 5.0, v_prediction=True), torch.clamp(snr, max=5.0) / (snr + 1))

    weighted = _trainer(run, snr_gamma=5.0, noise_offset=0.1, optimizer="adamw8bit")
    losses = [weighted.step() for _ in range(3)]  # type: ignore[attr-defined]
    assert all(np.isfinite(losses))
    assert weighted.optimizer_name == "adamw"  # type: ignore[attr-defined]  # no CUDA here: plain AdamW

    schema = TrainLoraParams.model_json_schema(by_alias=True)["properties"]
    for name in ("gradientCheckpointing", "optimizer", "noiseOffset", "snrGamma", "imageFit", "baseModel"):
        assert schema[name].get("description"), name


def test_crop_keeps_proportions_and_resize_keeps_the_whole_image() -> None:
    from control.tasks.assets import prepare_image

    wide = Image.new("RGB", (200, 100), (0, 0, 255))
    wide.paste((255, 0, 0), (0, 0, 20, 100))  # a red band at the left edge
    data = io.BytesIO()
    wide.save(data, "PNG")
    crop = np.asarray(Image.open(io.BytesIO(prepare_image(data.getvalue(), 64, 10**6, "crop"))))
    resize = np.asarray(Image.open(io.BytesIO(prepare_image(data.getvalue(), 64, 10**6, "resize"))))
    assert crop.shape == resize.shape == (64, 64, 3)
    assert crop[:, 0, 0].max() < 50  # cropped away
    assert resize[:, 0, 0].min() > 200  # kept (squashed)

"""train_lora in bf16 on CUDA (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest

from common.services import TrainLoraParams
from tests.worker.conftest import Run, put_images

pytestmark = [pytest.mark.ml, pytest.mark.gpu]


def test_train_lora_bf16_on_cuda(run: Run) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from worker.tasks.lora import train_lora

    keys = put_images(run.storage, run.job_id)
    p = TrainLoraParams(
        steps=30, rank=8, learning_rate=1e-2, resolution=64, precision="bf16", sample_every=15, checkpoint_every=10
    )
    out = train_lora(run.ctx("train", "train_lora", context={"images": keys, "prompt": "a photo of sks"}), p)
    assert out["device"].startswith("cuda") and out["precision"] == "bf16"
    assert math.isfinite(out["loss"]) and out["probeLoss"]["end"] < out["probeLoss"]["start"]
    assert 0 < out["peakMemoryBytes"] < torch.cuda.get_device_properties(0).total_memory
    assert run.storage.stat(out["lora"]["key"]).size == out["lora"]["size"]
    assert len(run.kinds("preview")) == 1

"""train_lora in bf16 on CUDA, and what a CUDA worker says in its heartbeat (skipped without a GPU)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from common.bridge import Bridge, connect
from common.estimate import PLANS
from common.keys import Keys
from common.params import TrainLoraParams
from common.settings import Settings
from tests.support.jobs import eventually
from tests.support.media import put_images
from tests.support.processes import Plane
from tests.worker.conftest import Run

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


async def test_a_cuda_worker_states_its_precision_and_recommends_gpu_sizes(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    worker = plane_factory("worker", settings)
    bridge = Bridge(connect(settings), Keys(settings.key_prefix), settings)
    assert worker.proc is not None
    suffix, found = f"-{worker.proc.pid}", []

    async def beat() -> bool:
        found[:] = [m for m in await bridge.live_manifests(30) if (m.instance or "").endswith(suffix)]
        return bool(found)

    await eventually(beat)
    manifest = found[0]
    assert manifest.device == "cuda" and manifest.demo is True
    assert manifest.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert manifest.recommended is not None
    assert manifest.recommended["train_lora"]["resolution"] == PLANS[("cuda", True)].lora_resolution
    await bridge.redis.aclose()

"""train_lora on the tiny SDXL demo: the LoRA (both file formats) loads into a fresh SDXL pipeline and changes
its image; resuming from a checkpoint gives the LoRA an uninterrupted run gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.params import TrainLoraParams
from tests.support.media import put_images
from tests.worker.conftest import Run
from worker.ml.demo_models import DemoModels

pytestmark = pytest.mark.ml

PROMPT = "a photo of sks toy"


def _image(pipe: Any) -> np.ndarray:
    import torch

    out = pipe(PROMPT, num_inference_steps=2, height=32, width=32, generator=torch.Generator().manual_seed(0))
    return np.asarray(out.images[0], dtype=np.float32)


def _fresh(demo_dir: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(DemoModels(demo_dir).sdxl, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sdxl_lora_trains_and_loads_into_a_fresh_sdxl_pipeline(run: Run, demo_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from worker.tasks.lora import train_lora

    keys = put_images(run.storage, run.job_id, n=2, size=32)
    p = TrainLoraParams(
        base_model="sdxl",
        steps=12,
        rank=4,
        learning_rate=2e-2,
        resolution=32,
        sample_every=6,
        checkpoint_every=0,
        sample_steps=2,
    )
    out = train_lora(run.ctx("train", "train_lora", context={"images": keys, "prompt": PROMPT}), p)
    assert out["baseModel"]["name"] == "sdxl" and out["baseModel"]["family"] == "sdxl"
    assert out["probeLoss"]["end"] < out["probeLoss"]["start"], out["probeLoss"]
    assert len(run.kinds("preview")) == 1 and out["sample"]["size"] > 0

    for name in ("pytorch_lora_weights.safetensors", "lora_kohya.safetensors"):
        run.storage.download(f"jobs/{run.job_id}/train/{name}", tmp_path / name)
    with safe_open(str(tmp_path / "lora_kohya.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"

    pipe = _fresh(demo_dir)
    base = _image(pipe)
    pipe.load_lora_weights(str(tmp_path), weight_name="pytorch_lora_weights.safetensors")
    with_lora = _image(pipe)
    assert np.abs(with_lora - base).max() > 2.0  # 8-bit pixel values
    kohya = _fresh(demo_dir)
    kohya.load_lora_weights(str(tmp_path), weight_name="lora_kohya.safetensors")
    assert np.abs(_image(kohya) - with_lora).max() <= 2.0


def test_sdxl_training_resumes_from_its_checkpoint(run: Run, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from worker.tasks.lora import train_lora

    keys = put_images(run.storage, run.job_id, n=2, size=32)
    common = {"base_model": "sdxl", "rank": 4, "learning_rate": 1e-2, "resolution": 32, "baseline": False}
    common |= {"sample_every": 0, "sample_steps": 1, "checkpoint_every": 2}
    context = {"images": keys, "prompt": PROMPT}

    first = train_lora(run.ctx("train", "train_lora", context=context), TrainLoraParams(steps=4, **common))
    assert first["startStep"] == 0  # it saved a checkpoint at step 2 (none at its last step)
    resumed = train_lora(run.ctx("train", "train_lora", context=context), TrainLoraParams(steps=6, **common))
    assert resumed["startStep"] == 2

    straight_run = Run(run.settings, run.storage)
    straight = train_lora(straight_run.ctx("train", "train_lora", context=context), TrainLoraParams(steps=6, **common))
    assert straight["startStep"] == 0
    a, b = tmp_path / "resumed.safetensors", tmp_path / "straight.safetensors"
    run.storage.download(resumed["lora"]["key"], a)
    run.storage.download(straight["lora"]["key"], b)
    got, want = load_file(str(a)), load_file(str(b))
    assert got.keys() == want.keys()
    assert all(np.allclose(got[k].numpy(), want[k].numpy(), atol=1e-6) for k in got)
    trained = load_file(str(tmp_path / "straight.safetensors"))
    assert any(float(t.abs().max()) > 0 for k, t in trained.items() if ".lora.up." in k)


def test_render_video_animates_an_sdxl_lora_with_an_sdxl_motion_adapter(run: Run, tmp_path: Path) -> None:
    from diffusers import MotionAdapter

    from common.errors import TaskInputError
    from common.params import RenderVideoParams
    from worker.tasks.lora import train_lora
    from worker.tasks.video import render_video

    keys = put_images(run.storage, run.job_id, n=2, size=32)
    fast = {"base_model": "sdxl", "steps": 2, "rank": 4, "resolution": 32, "baseline": False, "sample_every": 0}
    lora = train_lora(
        run.ctx("train", "train_lora", context={"images": keys, "prompt": PROMPT}),
        TrainLoraParams(sample_steps=1, checkpoint_every=0, **fast),  # type: ignore[arg-type]
    )
    p = RenderVideoParams(prompt=PROMPT, frames=4, fps=4, width=32, height=32, steps=2, guidance_scale=1.0)
    with pytest.raises(TaskInputError, match="BIPLANE_SDXL_MOTION_ADAPTER is not configured"):
        render_video(run.ctx("render", "render_video", inputs={"train": lora}), p)

    # a tiny SDXL motion adapter (channels of the demo SDXL UNet; no mid block, as AnimateDiff SDXL has none)
    adapter: Any = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
        use_motion_mid_block=False,
    )
    adapter.save_pretrained(tmp_path / "sdxl-motion")
    with_adapter = Run(
        run.settings.model_copy(update={"sdxl_motion_adapter": str(tmp_path / "sdxl-motion")}), run.storage
    )
    with_adapter.job_id = run.job_id
    out = render_video(with_adapter.ctx("render", "render_video", inputs={"train": lora}), p)
    assert out["usedLora"] == lora["lora"]["key"] and out["frames"] == 4 and out["width"] == 32
    assert any("(sdxl)" in e.get("message", "") for e in with_adapter.kinds("log"))
    assert out["models"]["sdxl_motion_adapter"]["reference"] == str(tmp_path / "sdxl-motion")
    assert out["models"]["sdxl_model"]["reference"] == "demo"

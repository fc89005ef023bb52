"""AnimateDiff: a motion adapter on the Stable Diffusion base, optionally with the job's LoRA, to uint8 frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.params import RenderVideoParams
from worker.ml.device import LOADING, Device

if TYPE_CHECKING:
    import numpy as np

LORA_ADAPTER = "user"


def load_pipeline(
    sd_dir: Path, motion_dir: Path, device: Device, lora_dir: Path | None, lora_scale: float, family: str = "sd15"
) -> Any:
    """AnimateDiff (the SDXL pipeline for the sdxl family) on the base directory with the motion adapter; the
    LoRA loaded at lora_scale."""
    from diffusers import AnimateDiffPipeline, AnimateDiffSDXLPipeline, MotionAdapter

    dtype = {"torch_dtype": device.dtype} if device.mixed else {}  # fp32 is the default: no cast notices
    cls: Any = AnimateDiffSDXLPipeline if family == "sdxl" else AnimateDiffPipeline
    with LOADING:
        adapter = MotionAdapter.from_pretrained(motion_dir, local_files_only=True, **dtype)
        pipe = cls.from_pretrained(sd_dir, motion_adapter=adapter, local_files_only=True, **dtype)
        if lora_dir is not None:
            pipe.load_lora_weights(str(lora_dir), adapter_name=LORA_ADAPTER)
            pipe.set_adapters([LORA_ADAPTER], [lora_scale])
    pipe.set_progress_bar_config(disable=True)
    return pipe if device.kind == "cpu" else pipe.to(device.device)


def render_frames(
    pipe: Any, p: RenderVideoParams, prompt: str, device: Device, on_step: Callable[[int], None]
) -> np.ndarray:
    """(frames, height, width, 3) uint8. on_step(i) runs after each denoising step (progress, cancel)."""
    import numpy as np
    import torch

    def callback(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(i + 1)
        return kwargs

    with torch.no_grad():
        out = pipe(
            prompt=prompt,
            negative_prompt=p.negative_prompt,
            num_frames=p.frames,
            height=p.height,
            width=p.width,
            num_inference_steps=p.steps,
            guidance_scale=p.guidance_scale,
            generator=torch.Generator(device.device).manual_seed(p.seed),
            output_type="np",
            callback_on_step_end=callback,
        )
    frames = np.asarray(out.frames[0], dtype=np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)

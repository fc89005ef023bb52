"""The LoRA file in kohya / Automatic1111 format, which ComfyUI, A1111, SD.Next and InvokeAI load.

Keys come from diffusers' own PEFT-to-kohya conversion (`lora_unet_<module>.lora_down.weight`, `.lora_up`,
`.alpha`); the usual kohya (`ss_*`) and model-spec (`modelspec.*`) metadata go in the safetensors header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

KOHYA_NAME = "lora_kohya.safetensors"

#: family -> (kohya `ss_base_model_version`, model-spec architecture)
_ARCHITECTURES = {
    "sd15": ("sd_v1", "stable-diffusion-v1/lora"),
    "sdxl": ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora"),
}


@dataclass(frozen=True)
class LoraInfo:
    """What a LoRA file says about itself."""

    family: str
    base_model: str
    rank: int
    alpha: float
    steps: int
    resolution: int
    trigger: str | None
    prompt: str
    title: str


def kohya_state_dict(unet_peft: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """A UNet's PEFT LoRA state dict (alpha not folded in) in kohya keys, each module with its alpha."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    prefixed = {f"unet.{k}": v.detach().float().cpu().contiguous() for k, v in unet_peft.items()}
    converted = convert_state_dict_to_kohya(prefixed)
    # diffusers writes alpha = rank (an int64 scalar); kohya's loaders scale by alpha / rank, so give the real one.
    return {k: (torch.tensor(float(alpha)) if k.endswith(".alpha") else v) for k, v in converted.items()}


def kohya_metadata(info: LoraInfo) -> dict[str, str]:
    version, architecture = _ARCHITECTURES[info.family]
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(info.rank),
        "ss_network_alpha": f"{info.alpha:g}",
        "ss_base_model_version": version,
        "ss_sd_model_name": info.base_model,
        "ss_max_train_steps": str(info.steps),
        "ss_steps": str(info.steps),
        "ss_resolution": f"({info.resolution}, {info.resolution})",
        "ss_output_name": info.title,
        "ss_training_comment": info.prompt,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.implementation": "diffusers",
        "modelspec.title": info.title,
        "modelspec.resolution": f"{info.resolution}x{info.resolution}",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
    }
    if info.trigger:
        meta["modelspec.trigger_phrase"] = info.trigger
    return meta


def save_kohya(out: Path, unet_peft: dict[str, torch.Tensor], info: LoraInfo) -> Path:
    from safetensors.torch import save_file

    save_file(kohya_state_dict(unet_peft, info.alpha), str(out), metadata=kohya_metadata(info))
    return out

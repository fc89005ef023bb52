"""What differs between base-model families in LoRA training: text encoders, the UNet's extra conditioning, the
pipeline that samples and saves. Stable Diffusion 1.x: one CLIP encoder. SDXL: two encoders (the penultimate
hidden states side by side), the second's pooled projection and the size/crop time ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.ml.device import LOADING

if TYPE_CHECKING:
    import torch


@dataclass
class TextEmbeds:
    """Per-image text conditioning: hidden states (n, tokens, dim) and, for SDXL, pooled embeddings (n, dim)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def take(self, idx: torch.Tensor | slice) -> TextEmbeds:
        return TextEmbeds(self.hidden[idx], None if self.pooled is None else self.pooled[idx])


def _ids(tokenizer: Any, texts: list[str], device: Any) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


class SD15:
    """Stable Diffusion 1.x (and 2.x-shaped) pipelines."""

    name = "sd15"

    def __init__(self, base_dir: Path) -> None:
        from transformers import CLIPTextModel, CLIPTokenizer

        with LOADING:
            self.tokenizer: Any = CLIPTokenizer.from_pretrained(base_dir, subfolder="tokenizer", local_files_only=True)
            self.text_encoder: Any = CLIPTextModel.from_pretrained(
                base_dir, subfolder="text_encoder", local_files_only=True
            )

    @property
    def text_modules(self) -> tuple[Any, ...]:
        return (self.text_encoder,)

    def encode(self, texts: list[str], device: Any) -> TextEmbeds:
        return TextEmbeds(self.text_encoder(_ids(self.tokenizer, texts, device), return_dict=False)[0].float())

    def unet_kwargs(self, embeds: TextEmbeds, resolution: int) -> dict[str, Any]:
        return {}

    def pipeline(self, base_dir: Path, unet: Any, vae: Any) -> Any:
        from diffusers import StableDiffusionPipeline

        with LOADING:
            return StableDiffusionPipeline.from_pretrained(
                base_dir,
                unet=unet,
                vae=vae,
                text_encoder=self.text_encoder,
                tokenizer=self.tokenizer,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=True,
            )

    @staticmethod
    def save(out_dir: Path, layers: dict[str, Any]) -> None:
        from diffusers import StableDiffusionPipeline

        StableDiffusionPipeline.save_lora_weights(out_dir, unet_lora_layers=layers, safe_serialization=True)


class SDXL:
    """Stable Diffusion XL pipelines."""

    name = "sdxl"

    def __init__(self, base_dir: Path) -> None:
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        load: dict[str, Any] = {"local_files_only": True}
        with LOADING:
            self.tokenizer: Any = CLIPTokenizer.from_pretrained(base_dir, subfolder="tokenizer", **load)
            self.tokenizer_2: Any = CLIPTokenizer.from_pretrained(base_dir, subfolder="tokenizer_2", **load)
            self.text_encoder: Any = CLIPTextModel.from_pretrained(base_dir, subfolder="text_encoder", **load)
            self.text_encoder_2: Any = CLIPTextModelWithProjection.from_pretrained(
                base_dir, subfolder="text_encoder_2", **load
            )

    @property
    def text_modules(self) -> tuple[Any, ...]:
        return (self.text_encoder, self.text_encoder_2)

    def encode(self, texts: list[str], device: Any) -> TextEmbeds:
        """Penultimate hidden states of both encoders, concatenated; the second encoder's pooled projection."""
        import torch

        first = self.text_encoder(_ids(self.tokenizer, texts, device), output_hidden_states=True)
        second = self.text_encoder_2(_ids(self.tokenizer_2, texts, device), output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return TextEmbeds(hidden.float(), second.text_embeds.float())

    def unet_kwargs(self, embeds: TextEmbeds, resolution: int) -> dict[str, Any]:
        """The pooled text and the time ids: original size, crop top-left, target size (square, uncropped)."""
        import torch

        assert embeds.pooled is not None
        n = embeds.pooled.shape[0]
        ids = torch.tensor([resolution, resolution, 0, 0, resolution, resolution], dtype=embeds.pooled.dtype)
        time_ids = ids.to(embeds.pooled.device).repeat(n, 1)
        return {"added_cond_kwargs": {"text_embeds": embeds.pooled, "time_ids": time_ids}}

    def pipeline(self, base_dir: Path, unet: Any, vae: Any) -> Any:
        from diffusers import StableDiffusionXLPipeline

        with LOADING:
            return StableDiffusionXLPipeline.from_pretrained(
                base_dir,
                unet=unet,
                vae=vae,
                text_encoder=self.text_encoder,
                text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer,
                tokenizer_2=self.tokenizer_2,
                local_files_only=True,
            )

    @staticmethod
    def save(out_dir: Path, layers: dict[str, Any]) -> None:
        from diffusers import StableDiffusionXLPipeline

        StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=layers, safe_serialization=True)


FAMILIES: dict[str, type[SD15] | type[SDXL]] = {"sd15": SD15, "sdxl": SDXL}

"""LoRA on a Stable Diffusion UNet's attention projections: noise-prediction MSE, AdamW, cached latents.

`LoraTrainer` holds the models; `noise_loss` and `LoraTrainer.step` are the small functions that train.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.params import TrainLoraParams
from worker.ml.device import LOADING, Device
from worker.ml.loop import optimizer_step

if TYPE_CHECKING:
    import torch
    from PIL import Image

TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


def images_to_tensor(pngs: list[bytes], resolution: int) -> torch.Tensor:
    """Square RGB images in [-1, 1], shape (n, 3, resolution, resolution); resized when they differ."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    arrays = []
    for data in pngs:
        with Image.open(io.BytesIO(data)) as im:
            rgb = ImageOps.fit(im.convert("RGB"), (resolution, resolution), Image.Resampling.LANCZOS)
        arrays.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def noise_loss(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    embeds: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """MSE between the UNet's prediction and its target (noise, or velocity for v-prediction models)."""
    import torch.nn.functional as F

    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps, encoder_hidden_states=embeds, return_dict=False)[0]
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


@dataclass
class LatentCache:
    """latent_dist mean/std per image; a fresh latent is sampled from them each step."""

    mean: torch.Tensor
    std: torch.Tensor


class LoraTrainer:
    """Frozen VAE + text encoder, LoRA-adapted UNet, optimizer and the step generator."""

    family = "sd15"

    def __init__(
        self, sd_dir: Path, p: TrainLoraParams, device: Device, pngs: list[bytes], captions: list[str], prompt: str
    ) -> None:
        """captions: the text of each image (trigger word included); prompt: the text of sample images."""
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from transformers import CLIPTextModel, CLIPTokenizer

        if len(captions) != len(pngs):
            raise ValueError(f"{len(captions)} captions for {len(pngs)} images")
        self.sd_dir, self.p, self.device, self.prompt, self.captions = sd_dir, p, device, prompt, captions
        dev, dtype = device.device, device.dtype
        load: dict[str, Any] = {"local_files_only": True}
        with LOADING:
            self.tokenizer: Any = CLIPTokenizer.from_pretrained(sd_dir, subfolder="tokenizer", **load)
            self.text_encoder: Any = CLIPTextModel.from_pretrained(sd_dir, subfolder="text_encoder", **load)
            self.vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae", **load)
            self.unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", **load)
            self.scheduler = DDPMScheduler.from_pretrained(sd_dir, subfolder="scheduler", **load)
        frozen: tuple[Any, ...] = (self.text_encoder, self.vae, self.unet)
        for m in frozen:
            m.requires_grad_(False)
            m.to(dev, dtype=dtype) if device.mixed else m.to(dev)  # fp32 .to(dtype) only logs noise
        self.text_encoder.eval()
        self.vae.eval()
        self.unet.add_adapter(
            LoraConfig(
                r=p.rank,
                lora_alpha=p.alpha or p.rank,  # type: ignore[arg-type]  # peft accepts a float alpha
                init_lora_weights="gaussian",
                target_modules=TARGET_MODULES,
            )
        )
        self.params = [q for q in self.unet.parameters() if q.requires_grad]
        for q in self.params:  # trainable weights stay fp32 under mixed precision (stable AdamW updates)
            q.data = q.data.float()
        if p.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.unet.train()
        self.optimizer = torch.optim.AdamW(self.params, lr=p.learning_rate, weight_decay=1e-2)
        self.scaler = device.grad_scaler()
        self.generator = torch.Generator(dev).manual_seed(p.seed)
        self.pixels = images_to_tensor(pngs, p.resolution).to(dev, dtype=dtype)
        self.embeds: torch.Tensor | None = None
        self.cache: LatentCache | None = None

    def cache_inputs(self, on_image: Callable[[int, int], None] = lambda i, n: None) -> None:
        """Encode each distinct caption once and, with cache_latents, each image's latents (one at a time)."""
        import torch

        self.embeds = self._encode_captions()  # always cached: the text encoder is frozen
        if not self.p.cache_latents:
            return
        parts = []
        for i in range(len(self.pixels)):
            parts.append(self._encode(self.pixels[i : i + 1]))
            on_image(i + 1, len(self.pixels))
        self.cache = LatentCache(torch.cat([c.mean for c in parts]), torch.cat([c.std for c in parts]))

    @property
    def trainable_count(self) -> int:
        return sum(q.numel() for q in self.params)

    def _encode_captions(self) -> torch.Tensor:
        """Text embeddings per image, shape (n, tokens, dim); images sharing a caption share one encoding."""
        import torch

        distinct = list(dict.fromkeys(self.captions))
        ids = self.tokenizer(
            distinct,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device.device)
        with torch.no_grad():
            encoded = self.text_encoder(ids, return_dict=False)[0].float()
        return encoded[[distinct.index(c) for c in self.captions]]

    def _encode(self, pixels: torch.Tensor) -> LatentCache:
        import torch

        with torch.no_grad():
            dist = self.vae.encode(pixels).latent_dist
        return LatentCache(dist.mean.float(), dist.std.float())

    def _latents(self, idx: torch.Tensor) -> torch.Tensor:
        import torch

        cache = self.cache or self._encode(self.pixels[idx.to(self.pixels.device)])
        mean = cache.mean[idx] if self.cache else cache.mean
        std = cache.std[idx] if self.cache else cache.std
        sample = mean + std * torch.randn(mean.shape, generator=self.generator, device=mean.device)
        return sample * self.vae.config.scaling_factor

    def step(self) -> float:
        """One optimizer step on a random batch with fresh noise and timesteps; returns the loss."""
        import torch

        dev = self.device.device
        idx = torch.randint(0, len(self.pixels), (self.p.batch_size,), generator=self.generator, device=dev)
        latents = self._latents(idx)
        noise = torch.randn(latents.shape, generator=self.generator, device=dev)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=self.generator, device=dev)
        assert self.embeds is not None, "cache_inputs() first"
        embeds = self.embeds[idx]
        with self.device.autocast():
            loss = noise_loss(self.unet, self.scheduler, latents, embeds, noise, timesteps)
        return optimizer_step(loss, self.optimizer, self.scaler, self.params)

    def probe_loss(
        self, seed: int = 0, per_image: int = 4, on_part: Callable[[int, int], None] = lambda i, n: None
    ) -> float:
        """Loss on a fixed set (latent means, seeded noise, evenly spread timesteps): comparable across steps.

        One UNet pass per (image, timestep), so progress (and a graceful stop) comes between passes."""
        import torch

        assert self.embeds is not None, "cache_inputs() first"
        dev = self.device.device
        gen = torch.Generator(dev).manual_seed(seed)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.linspace(50, steps - 50, per_image, device=dev).long()
        total, losses = len(self.pixels) * per_image, []
        for i in range(len(self.pixels)):
            mean = self.cache.mean[i : i + 1] if self.cache else self._encode(self.pixels[i : i + 1]).mean
            latents = mean * self.vae.config.scaling_factor
            for t in timesteps:
                noise = torch.randn(latents.shape, generator=gen, device=dev)
                with torch.no_grad(), self.device.autocast():
                    loss = noise_loss(self.unet, self.scheduler, latents, self.embeds[i : i + 1], noise, t.reshape(1))
                losses.append(float(loss))
                on_part(len(losses), total)
        return sum(losses) / len(losses)

    def sample(self, steps: int, seed: int, on_step: Callable[[int, int], None] = lambda i, n: None) -> Image.Image:
        """A preview image of the prompt with the LoRA as trained so far (fixed seed: comparable over time)."""
        import torch

        def callback(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(i + 1, steps)
            return kwargs

        pipe = self.pipeline()
        self.unet.eval()
        try:
            with torch.no_grad(), self.device.autocast():
                out = pipe(
                    self.prompt,
                    num_inference_steps=steps,
                    height=self.p.resolution,
                    width=self.p.resolution,
                    generator=torch.Generator(self.device.device).manual_seed(seed),
                    output_type="pil",
                    callback_on_step_end=callback,
                )
        finally:
            self.unet.train()
        return out.images[0]

    def pipeline(self) -> Any:
        from diffusers import StableDiffusionPipeline

        with LOADING:
            pipe = StableDiffusionPipeline.from_pretrained(
                self.sd_dir,
                unet=self.unet,
                vae=self.vae,
                text_encoder=self.text_encoder,
                tokenizer=self.tokenizer,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=True,
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def state(self) -> dict[str, Any]:
        from worker.ml.checkpoints import rng_state, trainable_state

        return {
            "trainable": trainable_state(self.unet),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.generator),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        from worker.ml.checkpoints import load_trainable, restore_rng

        load_trainable(state["trainable"], self.unet)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self.generator)

    def save_lora(self, out_dir: Path, base_model: str, title: str) -> tuple[Path, Path]:
        """Write the LoRA twice: pytorch_lora_weights.safetensors in diffusers' format (load_lora_weights) and
        lora_kohya.safetensors in kohya's (ComfyUI, A1111), with kohya/model-spec metadata.

        In the diffusers file alpha/rank is folded into the up weights: loaders then assume alpha = rank and
        get the same output, and no adapter metadata is needed (its target names would also match
        AnimateDiff's motion modules). The kohya file keeps the weights as trained with alpha per module.
        """
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        from worker.ml.lora_files import KOHYA_NAME, LoraInfo, save_kohya

        alpha = self.p.alpha or self.p.rank
        peft_state = get_peft_model_state_dict(self.unet)
        layers = convert_state_dict_to_diffusers(peft_state)
        scale = alpha / self.p.rank
        layers = {
            k: (v.detach().float() * (scale if ".lora.up." in k else 1.0)).cpu().contiguous() for k, v in layers.items()
        }
        StableDiffusionPipeline.save_lora_weights(out_dir, unet_lora_layers=layers, safe_serialization=True)
        info = LoraInfo(
            self.family,
            base_model,
            self.p.rank,
            alpha,
            self.p.steps,
            self.p.resolution,
            self.p.trigger_word,
            self.prompt,
            title,
        )
        return out_dir / WEIGHTS_NAME, save_kohya(out_dir / KOHYA_NAME, peft_state, info)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()

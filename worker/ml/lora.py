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
from worker.ml.families import TextEmbeds
from worker.ml.loop import optimizer_step

if TYPE_CHECKING:
    import torch
    from PIL import Image

TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


def images_to_tensor(pngs: list[bytes], resolution: int, fit: str = "crop") -> torch.Tensor:
    """Square RGB images in [-1, 1], shape (n, 3, resolution, resolution); cropped or squashed when they differ."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    arrays = []
    for data in pngs:
        with Image.open(io.BytesIO(data)) as im:
            rgb, size = im.convert("RGB"), (resolution, resolution)
            if rgb.size != size:
                lanczos = Image.Resampling.LANCZOS
                rgb = ImageOps.fit(rgb, size, lanczos) if fit == "crop" else rgb.resize(size, lanczos)
        arrays.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def noise_loss(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    embeds: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    snr_gamma: float | None = None,
    **cond: Any,
) -> torch.Tensor:
    """MSE between the UNet's prediction and its target (noise, or velocity for v-prediction models).

    snr_gamma: min-SNR weighting (Hang et al. 2023), each sample's loss scaled by min(SNR, gamma) / SNR (/ (SNR + 1)
    for v-prediction). cond: the family's extra UNet inputs (SDXL's added_cond_kwargs)."""
    import torch.nn.functional as F

    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps, encoder_hidden_states=embeds, return_dict=False, **cond)[0]
    v_prediction = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, timesteps) if v_prediction else noise
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=list(range(1, pred.ndim)))
    return (per_sample * min_snr_weights(scheduler, timesteps, snr_gamma, v_prediction)).mean()


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float, v_prediction: bool) -> torch.Tensor:
    """min(SNR(t), gamma) / SNR(t) per timestep (divided by SNR + 1 instead for v-prediction)."""
    import torch

    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas / (1 - alphas)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / (snr + 1) if v_prediction else clipped / snr


def offset_noise(shape: torch.Size, offset: float, generator: Any, device: Any) -> torch.Tensor:
    """Gaussian noise plus offset times a per-sample, per-channel constant (noise offset; 0 = plain noise)."""
    import torch

    noise = torch.randn(shape, generator=generator, device=device)
    if offset:
        noise = noise + offset * torch.randn((*shape[:2], 1, 1), generator=generator, device=device)
    return noise


def make_optimizer(params: list[Any], p: TrainLoraParams, device: Device) -> tuple[Any, str]:
    """AdamW, or bitsandbytes' 8-bit AdamW when asked for and usable (installed, CUDA); (optimizer, its name)."""
    import importlib.util

    import torch

    if p.optimizer == "adamw8bit" and device.kind == "cuda" and importlib.util.find_spec("bitsandbytes"):
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=p.learning_rate, weight_decay=1e-2), "adamw8bit"
    return torch.optim.AdamW(params, lr=p.learning_rate, weight_decay=1e-2), "adamw"


@dataclass
class LatentCache:
    """latent_dist mean/std per image; a fresh latent is sampled from them each step."""

    mean: torch.Tensor
    std: torch.Tensor


class LoraTrainer:
    """Frozen VAE + text encoder(s), LoRA-adapted UNet, optimizer and the step generator. The family
    (worker/ml/families.py) holds what differs between SD 1.x and SDXL: text encoders, extra UNet inputs."""

    def __init__(
        self,
        sd_dir: Path,
        p: TrainLoraParams,
        device: Device,
        pngs: list[bytes],
        captions: list[str],
        prompt: str,
        family: str = "sd15",
    ) -> None:
        """captions: the text of each image (trigger word included); prompt: the text of sample images."""
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig

        from worker.ml.families import FAMILIES

        if len(captions) != len(pngs):
            raise ValueError(f"{len(captions)} captions for {len(pngs)} images")
        self.sd_dir, self.p, self.device, self.prompt, self.captions = sd_dir, p, device, prompt, captions
        self.family = FAMILIES[family](sd_dir)
        dev, dtype = device.device, device.dtype
        load: dict[str, Any] = {"local_files_only": True}
        with LOADING:
            self.vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae", **load)
            self.unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", **load)
            self.scheduler = DDPMScheduler.from_pretrained(sd_dir, subfolder="scheduler", **load)
        frozen: tuple[Any, ...] = (*self.family.text_modules, self.vae, self.unet)
        for m in frozen:
            m.requires_grad_(False)
            m.to(dev, dtype=dtype) if device.mixed else m.to(dev)  # fp32 .to(dtype) only logs noise
            m.eval()
        torch.manual_seed(p.seed)  # the LoRA's initial weights: the same seed trains the same LoRA
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
        self.optimizer, self.optimizer_name = make_optimizer(self.params, p, device)
        self.scaler = device.grad_scaler()
        self.generator = torch.Generator(dev).manual_seed(p.seed)
        self.pixels = images_to_tensor(pngs, p.resolution, p.image_fit).to(dev, dtype=dtype)
        self.embeds: TextEmbeds | None = None
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

    def _encode_captions(self) -> TextEmbeds:
        """Text embeddings per image (n, tokens, dim); images sharing a caption share one encoding."""
        import torch

        distinct = list(dict.fromkeys(self.captions))
        with torch.no_grad():
            encoded = self.family.encode(distinct, self.device.device)
        return encoded.take(torch.tensor([distinct.index(c) for c in self.captions], device=self.device.device))

    def _loss(self, latents: torch.Tensor, embeds: TextEmbeds, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.family.unet_kwargs(embeds, self.p.resolution)
        return noise_loss(self.unet, self.scheduler, latents, embeds.hidden, noise, t, self.p.snr_gamma, **cond)

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
        noise = offset_noise(latents.shape, self.p.noise_offset, self.generator, dev)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=self.generator, device=dev)
        assert self.embeds is not None, "cache_inputs() first"
        with self.device.autocast():
            loss = self._loss(latents, self.embeds.take(idx), noise, timesteps)
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
                    loss = self._loss(latents, self.embeds.take(slice(i, i + 1)), noise, t.reshape(1))
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
        pipe = self.family.pipeline(self.sd_dir, self.unet, self.vae)
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

    def save_lora(self, out_dir: Path, base_model: str, title: str, base_name: str = "") -> tuple[Path, Path]:
        """Write the LoRA twice: pytorch_lora_weights.safetensors in diffusers' format (load_lora_weights) and
        lora_kohya.safetensors in kohya's (ComfyUI, A1111), with kohya/model-spec metadata.

        In the diffusers file alpha/rank is folded into the up weights: loaders then assume alpha = rank and
        get the same output, and no adapter metadata is needed (its target names would also match
        AnimateDiff's motion modules). The kohya file keeps the weights as trained with alpha per module.
        """
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
        self.family.save(out_dir, layers)
        mark_family(out_dir / WEIGHTS_NAME, self.family.name, base_name)
        info = LoraInfo(
            self.family.name,
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


FAMILY_KEY, BASE_KEY = "biplane.family", "biplane.baseModel"


def mark_family(path: Path, family: str, base_name: str) -> None:
    """Say in the diffusers file's header which family (and named base model) it was trained on: render_video
    reads it to pick the pipeline and base of a LoRA from another job."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"format": "pt", FAMILY_KEY: family, BASE_KEY: base_name})


def lora_family(path: Path) -> tuple[str, str | None]:
    """(family, base model name) a LoRA file says it was trained on; SD 1.x for files without a word on it."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return meta.get(FAMILY_KEY, "sd15"), meta.get(BASE_KEY) or None


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()

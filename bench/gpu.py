"""GPU check for a lent GPU (no downloads, under 8 minutes on one GPU): the gpu-marked tests, then LoRA step time
and peak GPU memory of Biplane's trainer at 512 px (SD 1.5 architecture) and 1024 px (SDXL architecture) in bf16,
next to the same steps through diffusers' reference LoRA training loop (train_text_to_image_lora*.py: VAE and
text encoders run every step, bf16 autocast, fp32 LoRA weights) for the ratio. Prints, never asserts.

The models are full-size architectures with random weights, built from their configs on the GPU and saved as
bf16 pipeline directories (speed does not depend on the weights). `--tiny` runs the same code on the demo models
on the CPU in fp32 (a smoke test of this script, not a measurement).

python -m bench.gpu [--steps 20] [--batch 1] [--rank 16] [--tiny] [--no-tests]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lora_step import _pngs

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a photo of sks toy"
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


def _clip(tokenizer: Any, hidden: int, layers: int, heads: int, projection: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_full_size(family: str, out: Path) -> Path:
    """A pipeline directory with the SD 1.5 / SDXL architecture and random bf16 weights (built on the GPU)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from worker.ml.tokenizers import train_clip_bpe

    with tempfile.TemporaryDirectory() as tmp:
        tok = CLIPTokenizer.from_pretrained(train_clip_bpe(Path(tmp)))
    vae_blocks = dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
    )
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    with torch.device("cuda"):
        if family == "sd15":
            pipe: Any = StableDiffusionPipeline(
                vae=AutoencoderKL(**vae_blocks, sample_size=512),
                text_encoder=CLIPTextModel(_clip(tok, 768, 12, 12, 768, "quick_gelu")),
                tokenizer=tok,
                unet=UNet(sample_size=64, cross_attention_dim=768),
                scheduler=scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(**vae_blocks, sample_size=1024, force_upcast=True),
                text_encoder=CLIPTextModel(_clip(tok, 768, 12, 12, 768, "quick_gelu")),
                text_encoder_2=CLIPTextModelWithProjection(_clip(tok, 1280, 32, 20, 1280, "gelu")),
                tokenizer=tok,
                tokenizer_2=tok,
                unet=UNet(
                    sample_size=128,
                    block_out_channels=(320, 640, 1280),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 2, 10),
                    attention_head_dim=(5, 10, 20),
                    cross_attention_dim=2048,
                    use_linear_projection=True,
                    addition_embed_type="text_time",
                    addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2816,
                ),
                scheduler=scheduler,
            )
    pipe.to(torch.bfloat16).save_pretrained(out)
    return out


def _timed(step: Callable[[], Any], steps: int, cuda: bool) -> tuple[float, int]:
    """Median seconds of step() after 3 warm-up steps, and the peak memory of the timed steps."""
    import torch

    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (torch.cuda.max_memory_allocated() if cuda else 0)


def biplane(base: Path, family: str, res: int, args: argparse.Namespace) -> tuple[float, int]:
    """Biplane's LoraTrainer (cached latents and text embeddings), as train_lora runs it."""
    from common.params import TrainLoraParams
    from worker.ml.device import pick
    from worker.ml.lora import LoraTrainer

    device = pick("fp32" if args.tiny else "bf16")
    p = TrainLoraParams(rank=args.rank, resolution=res, batch_size=args.batch, learning_rate=1e-4, sample_every=0)
    trainer = LoraTrainer(base, p, device, _pngs(4, res), [PROMPT] * 4, PROMPT, family)
    trainer.cache_inputs()
    return _timed(trainer.step, args.steps, device.kind == "cuda")


def reference(base: Path, family: str, res: int, args: argparse.Namespace) -> tuple[float, int]:
    """The step of diffusers' examples/text_to_image/train_text_to_image_lora(_sdxl).py: every step encodes the
    images with the VAE (fp32 for SDXL, as that script does) and the prompt with the text encoder(s), predicts
    under bf16 autocast, MSE, backward, clip, AdamW on fp32 LoRA weights."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from worker.ml.lora import images_to_tensor

    cuda = not args.tiny
    dev, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    load: dict[str, Any] = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **load)
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **load)
    tok = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **load)
    te1 = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **load)
    te2 = (
        CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2", **load)
        if family == "sdxl"
        else None
    )
    scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler", **load)
    for m in (unet, vae, te1, te2):
        if m is not None:
            m.requires_grad_(False)
    unet.to(dev, dtype=dtype)
    te1.to(dev, dtype=dtype)
    if te2 is not None:
        te2.to(dev, dtype=dtype)
    vae.to(dev, dtype=torch.float32 if family == "sdxl" else dtype)
    unet.add_adapter(
        LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=TARGETS)
    )
    cast_training_params(unet, dtype=torch.float32)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    pixels = images_to_tensor(_pngs(4, res), res).to(dev)
    ids = tok([PROMPT] * args.batch, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    input_ids = ids.input_ids.to(dev)
    gen = torch.Generator(dev).manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(pixels), (args.batch,), generator=gen, device=dev)
        batch = pixels[idx].to(vae.dtype)
        latents = vae.encode(batch).latent_dist.sample() * vae.config.scaling_factor
        latents = latents.to(dtype)
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=dev)
        noisy = scheduler.add_noise(latents, noise, t)
        cond: dict[str, Any] = {}
        if te2 is None:
            hidden = te1(input_ids, return_dict=False)[0]
        else:
            first = te1(input_ids, output_hidden_states=True)
            second = te2(input_ids, output_hidden_states=True)
            hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            time_ids = torch.tensor([[res, res, 0, 0, res, res]] * args.batch, device=dev, dtype=dtype)
            cond = {"added_cond_kwargs": {"text_embeds": second.text_embeds, "time_ids": time_ids}}
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=cuda):
            pred = unet(noisy, t, hidden, return_dict=False, **cond)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _timed(step, args.steps, cuda)


def gpu_tests() -> tuple[str, str, str]:
    """The gpu-marked tests (they skip without CUDA)."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-n", "0", "-q", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(Path(tempfile.gettempdir()) / "bench-gpu-pytest")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return ("gpu-marked tests", "passed" if done.returncode == 0 else f"exit {done.returncode}", summary)


def measure(family: str, res: int, args: argparse.Namespace, base: Path) -> list[tuple[str, str, str]]:
    import torch

    ours, ours_peak = biplane(base, family, res, args)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    ref, ref_peak = reference(base, family, res, args)
    precision = "fp32 CPU (tiny)" if args.tiny else "bf16"
    what = f"LoRA step {family} architecture {res} px, bs {args.batch}, r {args.rank}, {precision}"
    mib = 2**20
    return [
        (
            what,
            f"{ours * 1000:.1f} ms/step (diffusers reference {ref * 1000:.1f}): {ref / ours:.2f}x",
            f"goal >= 1.3x at no more peak memory: peak {ours_peak / mib:,.0f} MiB vs reference {ref_peak / mib:,.0f}",
        )
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="demo models on the CPU: checks the script only")
    parser.add_argument("--no-tests", action="store_true", help="skip the gpu-marked tests")
    return parser.parse_args(argv)


def run(args: argparse.Namespace | None = None) -> list[tuple[str, str, str]]:
    """`make bench`: only where CUDA is (on a CPU machine the row says so)."""
    import torch

    args = args or parse([])
    if not args.tiny and not torch.cuda.is_available():
        return [("GPU check (python -m bench.gpu)", "not run", "no CUDA on this machine")]
    rows = [] if args.no_tests or args.tiny else [gpu_tests()]
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from worker.ml.demo_models import ensure_demo_models

            demo = ensure_demo_models(Path(tmp) / "demo", sdxl=True)
            rows += measure("sd15", 32, args, demo.sd) + measure("sdxl", 32, args, demo.sdxl)
        else:
            for family, res in (("sd15", 512), ("sdxl", 1024)):
                base = build_full_size(family, Path(tmp) / family)
                rows += measure(family, res, args, base)
                torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    for row in run(parse()):
        print(" | ".join(row), flush=True)

"""LoRA step time on the demo models (SD and, next to it, the tiny SDXL): CPU fp32, and CUDA bf16 when a GPU is
present. Prints, never asserts. The full-size architectures on a GPU: `python -m bench.gpu`.

python -m bench.lora_step [--steps 30] [--resolution 64] [--rank 8] [--batch 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path


def _pngs(n: int, size: int) -> list[bytes]:
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        im = Image.new("RGB", (size, size), (40 * i % 256, 120, 200))
        ImageDraw.Draw(im).ellipse([size // 4, size // 4 + i, size * 3 // 4, size * 3 // 4], fill=(250, 200, 20))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def measure(models: Path, precision: str, args: argparse.Namespace, family: str = "sd15") -> tuple[str, str, str]:
    from common.params import TrainLoraParams
    from worker.ml.device import peak_memory_bytes, pick, reset_peak_memory
    from worker.ml.lora import LoraTrainer

    device = pick(precision)
    reset_peak_memory()
    p = TrainLoraParams(
        steps=args.steps, rank=args.rank, learning_rate=1e-2, resolution=args.resolution, batch_size=args.batch
    )
    base = models / ("sdxl" if family == "sdxl" else "sd")
    trainer = LoraTrainer(base, p, device, _pngs(4, args.resolution), ["a photo of sks"] * 4, "a photo of sks", family)
    trainer.cache_inputs()
    before = trainer.probe_loss()
    for _ in range(3):  # warm-up (allocator, kernels)
        trainer.step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        trainer.step()
        if device.kind == "cuda":
            import torch

            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    after = trainer.probe_loss()
    p90 = sorted(times)[int(0.9 * len(times))]
    return (
        f"LoRA step, {family} demo model, {device.name}, {device.precision}",
        f"{statistics.median(times) * 1000:.1f} ms/step median (p90 {p90 * 1000:.1f})",
        f"res {args.resolution} bs {args.batch} r {args.rank}, {args.threads} threads; probe loss {before:.4f} -> "
        f"{after:.4f} ({(after / before - 1) * 100:+.1f}%) in {args.steps + 3} steps; peak memory "
        f"{peak_memory_bytes(device) / 2**20:.0f} MiB; {trainer.trainable_count} LoRA params",
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def run(args: argparse.Namespace | None = None) -> list[tuple[str, str, str]]:
    import torch

    from worker.ml.demo_models import ensure_demo_models

    args = args or parse([])
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = ensure_demo_models(Path(tmp) / "models", sdxl=True).root
        rows = [measure(models, "fp32", args), measure(models, "fp32", args, "sdxl")]
        if torch.cuda.is_available():
            rows.append(measure(models, "bf16", args))
        else:
            rows.append(("LoRA step, CUDA bf16", "not run", "no CUDA on this machine"))
    return rows


if __name__ == "__main__":
    for row in run(parse()):
        print(" | ".join(row))

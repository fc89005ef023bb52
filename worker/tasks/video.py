"""render_video: AnimateDiff frames with the job's LoRA, H.264 MP4, narration in the trained voice, poster."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from common import basemodels
from common.basemodels import BaseModelSpec
from common.childproc import forward
from common.context import TaskContext
from common.errors import TaskInputError
from common.params import RenderVideoParams
from common.registry import Registry
from worker.ml import models
from worker.ml.device import peak_memory_bytes, pick, reset_peak_memory
from worker.ml.lora import WEIGHTS_NAME, png_bytes
from worker.ml.media import SAMPLE_RATE, encode_mp4
from worker.tasks import inputs

registry = Registry()


def _lora_key(ctx: TaskContext, p: RenderVideoParams) -> str | None:
    return inputs.ref_key(ctx, p.lora, WEIGHTS_NAME) or inputs.key_of(inputs.value(ctx, "lora"))


def _lora_base(ctx: TaskContext, lora_file: Path) -> tuple[str, BaseModelSpec]:
    """The family and base model a LoRA was trained on (its file says; the family's default base model when the
    named one is not offered here)."""
    from worker.ml.lora import lora_family

    family, name = lora_family(lora_file)
    offered = [b for b in basemodels.base_models(ctx.settings) if b.family == family]
    found = next((b for b in offered if b.name == name), offered[0] if offered else None)
    if found is None:
        raise TaskInputError(f"the LoRA was trained on an {family} base model and none is configured here")
    return family, found


def _voice_prefix(ctx: TaskContext, p: RenderVideoParams) -> str | None:
    key = inputs.ref_key(ctx, p.voice, "voice/speaker.safetensors") or inputs.key_of(inputs.value(ctx, "voiceDir"))
    if key is None:
        return None
    return key.rsplit("/", 1)[0] + "/" if not key.endswith("/") else key


@registry.builtin(
    "render_video",
    outputs=("video", "poster", "frames", "fps", "hasAudio"),
    gpu=True,
    isolated=True,
    memory_options=("width", "height", "frames"),
)
def render_video(ctx: TaskContext, p: RenderVideoParams) -> dict[str, Any]:
    """Denoise the frames, speak the narration, encode and upload (the service is described by its params)."""
    from PIL import Image

    from worker.ml.video import load_pipeline, render_frames
    from worker.ml.voice import load_voice

    ctx.phase("loading-model")
    # A script written upstream (generate_script) comes first, then the job's prompt and narration.
    prompt = p.prompt or str(inputs.value(ctx, "stagePrompt") or inputs.value(ctx, "prompt", "") or "")
    narration = p.narration or inputs.value(ctx, "narration")
    lora_key, voice_prefix = _lora_key(ctx, p), _voice_prefix(ctx, p)
    device = pick(p.precision)
    reset_peak_memory()
    with tempfile.TemporaryDirectory() as tmp:
        lora_dir = None
        family, base = "sd15", None
        if lora_key is not None:
            lora_dir = Path(tmp, "lora")
            lora_dir.mkdir()
            (lora_dir / WEIGHTS_NAME).write_bytes(inputs.read(ctx, lora_key, "LoRA"))
            family, base = _lora_base(ctx, lora_dir / WEIGHTS_NAME)
        motion = "sdxl_motion_adapter" if family == "sdxl" else "motion_adapter"
        base_setting = "sdxl_model" if family == "sdxl" else "sd_model"
        needed = [motion] + ([] if base else [base_setting]) + (["tts_model", "vocoder_model"] if narration else [])
        paths = models.resolve(
            ctx.settings, *needed, base=base, on_progress=lambda done: ctx.phase("loading-model", done)
        )
        base_dir = paths.paths[base_setting]
        ctx.log(f"render_video on {device.name}; LoRA {lora_key or 'none'} ({family}); voice {voice_prefix or 'none'}")
        pipe = load_pipeline(base_dir, paths.paths[motion], device, lora_dir, p.lora_scale, family)

        ctx.phase("denoising")
        began = time.monotonic()

        def on_step(i: int) -> None:
            eta = (time.monotonic() - began) / i * (p.steps - i)
            ctx.progress(0.9 * i / p.steps, step=i, total_steps=p.steps, eta_seconds=round(eta, 1))
            ctx.check_cancel()

        frames = render_frames(pipe, p, prompt, device, on_step)
        per_frame_step = (time.monotonic() - began) / (p.steps * p.frames)
        audio = None
        if narration:
            ctx.phase("narration")
            voice_dir = inputs.download_dir(ctx, voice_prefix, Path(tmp, "voice")) if voice_prefix else None
            voice = load_voice(paths.tts, paths.vocoder, voice_dir, device, paths.demo)
            audio = voice.synthesize(str(narration))
    ctx.check_cancel()
    ctx.phase("encoding")
    mp4 = encode_mp4(frames, p.fps, audio)
    ctx.phase("uploading")
    video = ctx.put_artifact("video.mp4", mp4.data, "video/mp4")
    poster = ctx.put_artifact("poster.png", png_bytes(Image.fromarray(frames[0])), "image/png")
    ctx.progress(1.0, step=p.steps, total_steps=p.steps)
    peak = peak_memory_bytes(device)
    forward("worker.metrics:peak_memory", ctx.service, peak)
    forward("worker.metrics:step_time", ctx.service, round(math.sqrt(p.width * p.height)), per_frame_step)
    return {
        "video": video.model_dump(by_alias=True, mode="json"),
        "poster": poster.model_dump(by_alias=True, mode="json"),
        "frames": int(frames.shape[0]),
        "fps": p.fps,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "codec": mp4.codec,
        "hasAudio": mp4.audio_codec is not None,
        "audioSeconds": round(len(audio) / SAMPLE_RATE, 3) if audio is not None else 0.0,
        "prompt": prompt,
        "narration": str(narration) if narration else None,
        "usedLora": lora_key,
        "usedVoice": voice_prefix,
        "device": device.name,
        "demo": paths.demo,
        "models": paths.used,  # each model's setting, reference, repo id and commit: what this render used
        "peakMemoryBytes": peak,
    }

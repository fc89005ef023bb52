"""prepare_assets: decode, orient, crop and resize the uploaded images; check clips and transcripts."""

from __future__ import annotations

import io
from typing import Any

import soundfile
from PIL import Image, ImageOps, UnidentifiedImageError

from common.context import TaskContext
from common.errors import TaskInputError
from common.params import PrepareAssetsParams
from common.registry import Registry

registry = Registry()


def prepare_image(data: bytes, resolution: int, max_pixels: int, fit: str = "crop") -> bytes:
    """A square RGB PNG of resolution px: EXIF-oriented, centre-cropped (or squashed whole), Lanczos-resized."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:  # checked before decoding any pixel
                raise TaskInputError(f"image is {im.width}x{im.height}; the limit is {max_pixels} pixels")
            im.load()
            oriented = ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise TaskInputError(f"image does not decode: {e}") from e
    size, lanczos = (resolution, resolution), Image.Resampling.LANCZOS
    square = ImageOps.fit(oriented, size, lanczos) if fit == "crop" else oriented.resize(size, lanczos)
    out = io.BytesIO()
    square.save(out, "PNG", optimize=False)
    return out.getvalue()


def check_clip(data: bytes) -> float:
    """Seconds of audio in a clip; raises TaskInputError when it does not decode or is empty."""
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise TaskInputError(f"audio does not decode: {e}") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise TaskInputError("audio clip is empty")
    return float(info.frames / info.samplerate)


@registry.builtin("prepare_assets", outputs=("images", "captions", "clips", "transcripts"))
def prepare_assets(ctx: TaskContext, p: PrepareAssetsParams) -> dict[str, Any]:
    """Decode every image under a pixel limit, orient, crop/resize to the training size; check audio."""
    assert ctx.storage is not None
    images = list(ctx.job_inputs.get("images") or [])
    clips = list(ctx.job_inputs.get("clips") or [])
    transcripts = [str(t).strip() for t in ctx.job_inputs.get("transcripts") or []]
    if len(transcripts) != len(clips) or any(not t for t in transcripts):
        raise TaskInputError("every clip needs a non-empty transcript")
    prepared = []
    steps = len(images) + len(clips)
    for i, key in enumerate(images):
        ctx.check_cancel()
        try:
            png = prepare_image(ctx.storage.get_bytes(key), p.resolution, p.max_pixels, p.image_fit)
        except TaskInputError as e:
            raise TaskInputError(f"images[{i}]: {e.message}") from e
        out_key = ctx.artifact_key(f"images/{i:03d}.png")
        ctx.storage.put_bytes(out_key, png, "image/png")
        prepared.append(out_key)
        ctx.progress(step=i + 1, total_steps=steps)
    seconds = []
    for i, key in enumerate(clips):
        ctx.check_cancel()
        try:
            seconds.append(check_clip(ctx.storage.get_bytes(key)))
        except TaskInputError as e:
            raise TaskInputError(f"clips[{i}]: {e.message}") from e
        ctx.progress(step=len(images) + i + 1, total_steps=steps)
    return {
        "images": prepared,
        "resolution": p.resolution,
        "prompt": ctx.job_inputs.get("prompt", ""),
        "captions": ctx.job_inputs.get("captions"),
        "clips": clips,
        "clipSeconds": seconds,
        "transcripts": transcripts,
        "narration": ctx.job_inputs.get("narration"),
    }

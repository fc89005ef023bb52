"""`make demo` / `biplane demo`: a studio job on generated sample inputs, end to end, into ./demo-output/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.dev.devstack import ready, stop_process, wait_until

TRANSCRIPTS = [
    "the quick brown fox jumps over the lazy dog",
    "biplanes fly low over green fields",
    "a calm voice reads the morning news",
]
NARRATION = "Welcome to Biplane. This video was rendered with your own style and narrated by your own voice."
#: Small enough for demo models on a CPU; raise them on a GPU with real models.
OPTIONS = {"steps": 30, "rank": 8, "learningRate": 0.001, "resolution": 64, "sampleEvery": 10, "checkpointEvery": 10}
VOICE_OPTIONS = {"steps": 30}
VIDEO_OPTIONS = {"frames": 8, "fps": 8, "width": 64, "height": 64, "steps": 4}


def sample_inputs(root: Path) -> tuple[Path, Path, Path]:
    """Four shape images, three synthetic speech-like clips (16 kHz WAV) and their transcripts."""
    import numpy as np
    import soundfile
    from PIL import Image, ImageDraw

    images, clips = root / "images", root / "clips"
    images.mkdir(parents=True, exist_ok=True)
    clips.mkdir(parents=True, exist_ok=True)
    palette = [(230, 80, 60), (60, 140, 230), (90, 200, 120), (240, 200, 60)]
    for i, color in enumerate(palette):
        im = Image.new("RGB", (256, 256), (245, 240, 230))
        draw = ImageDraw.Draw(im)
        draw.ellipse((40 + 10 * i, 50, 200, 210 - 10 * i), fill=color)
        draw.rectangle((20, 200, 236, 236), fill=(40, 40, 40))
        im.save(images / f"sample-{i}.png")
    rng = np.random.default_rng(0)
    for i, text in enumerate(TRANSCRIPTS):
        rate, seconds = 16000, 0.06 * len(text)
        t = np.arange(int(rate * seconds)) / rate
        pitch = 110 + 30 * i + 15 * np.sin(2 * np.pi * 3 * t)  # a gliding voiced tone with syllable envelope
        wave = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
        envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * np.minimum(1, 10 * t) * np.minimum(1, 10 * (seconds - t))
        audio = 0.3 * wave * envelope + 0.01 * rng.standard_normal(t.size)
        soundfile.write(clips / f"clip-{i}.wav", audio.astype("float32"), rate)
    transcripts = root / "transcripts.txt"
    transcripts.write_text("\n".join(TRANSCRIPTS) + "\n")
    return images, clips, transcripts


@contextmanager
def stack_running(url: str, dev_dir: Path) -> Iterator[str | None]:
    """Yields the API key of a stack at url, starting `python -m infra.dev.devstack` when none answers."""
    if ready(url):
        yield None
        return
    dev_dir.mkdir(parents=True, exist_ok=True)
    log = (dev_dir / "demo-stack.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.dev.devstack"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "BIPLANE_DEV_DIR": str(dev_dir)},
    )
    try:
        print(f"starting the stack (log: {dev_dir / 'demo-stack.log'}) …", file=sys.stderr, flush=True)
        wait_until(lambda: ready(url) and ready(url.replace(":8000", ":8001")), 300, "the stack", proc)
        yield (dev_dir / "api-key").read_text().strip()
    finally:
        stop_process(proc, grace=20)
        log.close()


DESCRIPTIONS = {
    ".safetensors": "LoRA / voice weights (safetensors)",
    ".png": "image (preview, sample or poster)",
    ".wav": "speech sample (16 kHz WAV)",
    ".mp4": "rendered video (H.264 MP4)",
    ".json": "manifest / config (JSON)",
    ".md": "model card (Markdown)",
}


def describe(path: Path) -> str:
    if path.suffix == ".mp4":
        import av

        with av.open(str(path)) as f:
            v = f.streams.video[0]
            audio = " + audio" if f.streams.audio else ""
            return f"H.264 video, {v.frames} frames {v.width}x{v.height} @ {v.average_rate} fps{audio}"
    if path.suffix == ".wav":
        import soundfile

        info = soundfile.info(str(path))
        return f"speech, {info.duration:.2f} s at {info.samplerate} Hz"
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            kind = "preview" if "preview" in path.name else "poster" if "poster" in path.name else "image"
            return f"{kind}, {im.width}x{im.height}"
    return DESCRIPTIONS.get(path.suffix, "file")

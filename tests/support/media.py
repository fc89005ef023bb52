"""Synthetic media for tests: images, a PNG bomb, audio clips, and the uploads prepare_assets leaves behind."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile
from PIL import Image, ImageDraw

from common.storage import Storage

TRANSCRIPTS = ["the quick brown fox jumps", "biplanes fly low over green fields", "a calm voice reads the news"]


def png(size: tuple[int, int] = (96, 80), color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A plain RGB PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def training_png(i: int, size: int = 64) -> bytes:
    """A distinct synthetic image: a coloured background with a bright rectangle that moves with i."""
    im = Image.new("RGB", (size, size), (30 * i % 256, (200 - 40 * i) % 256, 100))
    ImageDraw.Draw(im).rectangle([size // 8 + 4 * i, size // 8, size // 2 + 4 * i, size * 3 // 4], fill=(250, 250, 20))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def put_images(storage: Storage, job_id: str, n: int = 4, size: int = 64) -> list[str]:
    """What prepare_assets leaves behind: square RGB PNGs under jobs/<id>/prepare/images/."""
    keys = []
    for i in range(n):
        key = f"jobs/{job_id}/prepare/images/{i:03d}.png"
        storage.put_bytes(key, training_png(i, size), "image/png")
        keys.append(key)
    return keys


def put_clips(storage: Storage, job_id: str) -> list[str]:
    """Speech-like uploads at 22.05 kHz stereo (the task resamples to 16 kHz mono): voiced harmonics + noise."""
    rng = np.random.default_rng(0)
    keys = []
    for i, text in enumerate(TRANSCRIPTS):
        rate, seconds = 22_050, 0.08 * len(text)
        t = np.arange(int(rate * seconds)) / rate
        f0 = 110 + 20 * i + 15 * np.sin(2 * np.pi * 3 * t)
        voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
        mono = (0.2 * voiced * envelope + rng.normal(0, 0.01, t.size)).astype(np.float32)
        out = io.BytesIO()
        soundfile.write(out, np.stack([mono, mono], axis=1), rate, format="WAV")
        key = f"jobs/{job_id}/inputs/clips/{i:03d}.wav"
        storage.put_bytes(key, out.getvalue(), "audio/wav")
        keys.append(key)
    return keys


def bomb_png(side: int = 60_000) -> bytes:
    """A tiny PNG file that claims side x side pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A mono sine tone as WAV."""
    out = io.BytesIO()
    soundfile.write(
        out, np.sin(np.linspace(0, 440 * seconds, int(rate * seconds))).astype("float32"), rate, format="WAV"
    )
    return out.getvalue()

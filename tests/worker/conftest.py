"""Worker ML fixtures: demo models built once per session, in-process task runs with a real S3 context."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from PIL import Image, ImageDraw

from common.context import TaskContext
from common.settings import Settings
from common.storage import Storage

TRANSCRIPTS = ["the quick brown fox jumps", "biplanes fly low over green fields", "a calm voice reads the news"]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Demo models built once for the session (the worker's own builder; worker processes reuse the dir)."""
    import torch

    from worker.ml.demo_models import ensure_demo_models

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("demo-models") / "models"
    ensure_demo_models(root)
    yield root


@pytest.fixture
def ml_settings(settings: Settings, demo_dir: Path) -> Settings:
    return settings.model_copy(update={"demo_model_dir": demo_dir})


def png(i: int, size: int = 64) -> bytes:
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
        storage.put_bytes(key, png(i, size), "image/png")
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


@dataclass
class Run:
    """A TaskContext for in-process task runs; emitted events are kept in order."""

    settings: Settings
    storage: Storage
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    events: list[dict[str, Any]] = field(default_factory=list)

    def ctx(
        self,
        node_id: str,
        service: str,
        context: dict[str, Any] | None = None,
        inputs: dict[str, dict[str, Any]] | None = None,
    ) -> TaskContext:
        return TaskContext(
            job_id=self.job_id,
            node_id=node_id,
            service=service,
            attempt=1,
            settings=self.settings,
            storage=self.storage,
            job_inputs=context or {},
            inputs=inputs or {},
            emit=self.events.append,
        )

    def kinds(self, kind: str, node_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind and (node_id is None or e["nodeId"] == node_id)]


@pytest.fixture
def run(ml_settings: Settings, storage: Storage) -> Run:
    return Run(ml_settings, storage)

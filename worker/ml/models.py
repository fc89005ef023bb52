"""Which base model directories a task uses: the configured ones (checked up front) or the demo models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import TaskInputError
from common.settings import Settings
from worker.ml.demo_models import DemoModels, ensure_demo_models

#: setting name -> files that make a directory usable (one of each tuple must exist)
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "sd_model": (("model_index.json",), ("unet/config.json",), ("vae/config.json",), ("text_encoder/config.json",)),
    "tts_model": (("config.json",), ("spm_char.model", "tokenizer_config.json")),
    "vocoder_model": (("config.json",),),
    "motion_adapter": (("config.json",),),
}


class ModelMissing(TaskInputError):
    """A configured model directory is missing or incomplete (no retry: it will not appear by itself)."""

    code = "model_missing"


@dataclass(frozen=True)
class ModelPaths:
    sd: Path
    tts: Path
    vocoder: Path
    motion_adapter: Path
    demo: bool


def uses_demo_models(settings: Settings) -> bool:
    """True when any base model is unset, so at least one service runs on demo weights."""
    return any(getattr(settings, name) is None for name in _REQUIRED)


def check(settings: Settings, *names: str) -> None:
    """Raise ModelMissing naming the setting and the path when a configured directory is unusable."""
    for name in names:
        path: Path | None = getattr(settings, name)
        if path is None:
            continue
        missing = [alts[0] for alts in _REQUIRED[name] if not any((path / f).is_file() for f in alts)]
        if not path.is_dir() or missing:
            what = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
            raise ModelMissing(f"BIPLANE_{name.upper()}={path} {what}")


def resolve(settings: Settings, *needed: str) -> ModelPaths:
    """Paths of the models named in needed (setting names); demo models stand in for unset ones."""
    check(settings, *needed)
    demo_needed = [n for n in needed if getattr(settings, n) is None]
    demo_root = settings.demo_model_dir.resolve()
    demo = ensure_demo_models(demo_root) if demo_needed else DemoModels(demo_root)
    return ModelPaths(
        sd=settings.sd_model or demo.sd,
        tts=settings.tts_model or demo.tts,
        vocoder=settings.vocoder_model or demo.vocoder,
        motion_adapter=settings.motion_adapter or demo.motion_adapter,
        demo=bool(demo_needed),
    )

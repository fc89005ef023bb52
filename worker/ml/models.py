"""Which base models a task uses: the configured references (local directories or hub ids, checked up front) or
the demo models built locally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import basemodels, modelrefs
from common.basemodels import BaseModelSpec
from common.modelrefs import ModelMissing, ModelRef, Resolved, parse_hub_id
from common.modelrefs import resolve as resolve_ref
from common.models.manifest_schema import ModelStatus
from common.settings import Settings
from worker.ml.demo_models import DemoModels, ensure_demo_models

__all__ = ["ModelMissing", "ModelPaths", "check", "resolve", "statuses", "uses_demo_models"]

_PIPELINE = (("model_index.json",), ("unet/config.json",), ("vae/config.json",), ("text_encoder/config.json",))
#: setting name -> files that make a directory usable (one of each tuple must exist)
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "sd_model": _PIPELINE,
    "sdxl_model": (*_PIPELINE, ("text_encoder_2/config.json",)),
    "tts_model": (("config.json",), ("spm_char.model", "tokenizer_config.json")),
    "vocoder_model": (("config.json",),),
    "motion_adapter": (("config.json",),),
    "sdxl_motion_adapter": (("config.json",),),
}
#: setting name -> its demo model (the SDXL motion adapter has none)
_DEMO: dict[str, Callable[[DemoModels], Path]] = {
    "sd_model": lambda d: d.sd,
    "sdxl_model": lambda d: d.sdxl,
    "tts_model": lambda d: d.tts,
    "vocoder_model": lambda d: d.vocoder,
    "motion_adapter": lambda d: d.motion_adapter,
}
_FAMILY_SETTING = {"sd15": "sd_model", "sdxl": "sdxl_model"}


@dataclass(frozen=True)
class ModelPaths:
    """Directories of the models a task needs, by setting name, and what each resolved to."""

    paths: dict[str, Path]
    used: dict[str, dict[str, Any]] = field(default_factory=dict)
    demo: bool = False

    def __getattr__(self, name: str) -> Path:  # paths.sd, paths.tts, ...
        key = {"sd": "sd_model", "sdxl": "sdxl_model", "tts": "tts_model", "vocoder": "vocoder_model"}.get(name, name)
        try:
            return self.paths[key]
        except KeyError:
            raise AttributeError(name) from None


def statuses(settings: Settings) -> list[ModelStatus]:
    """What the heartbeat says of each configured model: the reference and the commit it resolves to here."""
    out = []
    for setting, raw in modelrefs.configured(settings):
        found = modelrefs.status(settings, setting, raw)
        out.append(
            ModelStatus.model_validate({k: found[k] for k in ("setting", "reference", "repoId", "revision", "cached")})
        )
    return out


def uses_demo_models(settings: Settings) -> bool:
    """True when a model a service uses is unset, so at least one service runs on demo weights."""
    services = ("sd_model", "tts_model", "vocoder_model", "motion_adapter")
    return any(getattr(settings, n) is None for n in services) or any(
        b.reference is None for b in basemodels.base_models(settings)
    )


def env_name(setting: str) -> str:
    return f"BIPLANE_{setting.upper()}"


def _check_dir(name: str, setting: str, path: Path, raw: str) -> None:
    missing = [alts[0] for alts in _REQUIRED[name] if not any((path / f).is_file() for f in alts)]
    if not path.is_dir() or missing:
        what = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
        where = f"{setting}={raw}" if raw == str(path) else f"{raw} ({setting}, at {path})"
        raise ModelMissing(f"{where} {what}")


def check(settings: Settings, *names: str) -> None:
    """Raise ModelMissing naming the setting and the path when a configured local directory is unusable
    (hub ids are checked when they resolve)."""
    for name in names:
        raw = getattr(settings, name)
        if raw is not None and parse_hub_id(raw) is None:
            _check_dir(name, env_name(name), Path(raw).expanduser(), raw)


def _resolve_one(settings: Settings, name: str, ref: ModelRef, on_progress: Callable[[float], None] | None) -> Resolved:
    found = resolve_ref(ref, settings, on_progress)
    _check_dir(name, ref.setting, found.path, ref.raw)
    return found


def resolve(
    settings: Settings,
    *needed: str,
    base: BaseModelSpec | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ModelPaths:
    """Paths of the models named in needed (setting names) and of base (a named base model, under its family's
    setting name); demo models stand in for unset ones. Hub ids are fetched into the cache (on_progress: the
    fraction of files done) unless offline."""
    refs: dict[str, ModelRef | None] = {}
    for name in needed:
        raw = getattr(settings, name)
        refs[name] = ModelRef(env_name(name), raw) if raw is not None else None
    if base is not None:
        refs[_FAMILY_SETTING[base.family]] = ModelRef(base.setting, base.reference) if base.reference else None
    paths: dict[str, Path] = {}
    used: dict[str, dict[str, Any]] = {}
    for name, ref in refs.items():
        if ref is None:
            continue
        found = _resolve_one(settings, name, ref, on_progress)
        paths[name], used[name] = found.path, found.describe()
    demo_needed = [n for n, r in refs.items() if r is None]
    if demo_needed:
        if any(n not in _DEMO for n in demo_needed):
            unset = ", ".join(env_name(n) for n in demo_needed if n not in _DEMO)
            raise ModelMissing(f"{unset} is not configured and has no demo model")
        demo = ensure_demo_models(settings.demo_model_dir.resolve(), sdxl="sdxl_model" in demo_needed)
        for name in demo_needed:
            paths[name] = _DEMO[name](demo)
            used[name] = {"setting": env_name(name), "reference": "demo", "repoId": None, "revision": None}
    return ModelPaths(paths, used, bool(demo_needed))

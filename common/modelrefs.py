"""Model references: a local directory or a Hugging Face hub id `org/name` with an optional `@revision`.

Hub ids are fetched once with huggingface_hub into the model cache (BIPLANE_MODEL_CACHE, else the hub's own
default) and found there afterwards. Offline (BIPLANE_OFFLINE=true or the standard HF_HUB_OFFLINE=1) only the
cache is used, and a model missing from it fails with a message naming the id and the setting. A private or
gated model uses the standard HF_TOKEN. No torch here: the worker, the CLI (`biplane models`) and control use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import TaskInputError

if TYPE_CHECKING:
    from common.settings import Settings

#: `org/name` or `org/name@revision` (a branch, tag or commit).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<rev>[\w.\-/]{1,128}))?$")

#: Files fetched from a hub repo: configs, tokenizers and safetensors weights. A diffusers pipeline (SD, SDXL)
#: keeps them in component folders: its top-level files but model_index.json are single-file checkpoints
#: (several GB) that the pipeline does not load. Never .bin/.ckpt duplicates, fp16 variants, ONNX/Flax exports,
#: or the SD safety checker (never loaded).
MODEL_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
PIPELINE_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.safetensors"]
IGNORE_PATTERNS = [
    "*.fp16.*",
    "*non_ema*",
    "*.onnx*",
    "*.msgpack",
    "*.h5",
    "*.ckpt",
    "*.bin",
    "*.pt",
    "safety_checker/*",
]
#: Settings that name diffusers pipelines (the base models of BIPLANE_BASE_MODELS too).
PIPELINE_SETTINGS = ("BIPLANE_SD_MODEL", "BIPLANE_SDXL_MODEL", "BIPLANE_BASE_MODELS[")


class ModelMissing(TaskInputError):
    """A configured model is missing or incomplete, or not in the cache when offline (no retry: it will not
    appear by itself)."""

    code = "model_missing"


@dataclass(frozen=True)
class ModelRef:
    """One configured model: the setting that names it and where it lives."""

    setting: str  # the environment name, e.g. BIPLANE_SD_MODEL
    raw: str

    @property
    def pipeline(self) -> bool:
        return self.setting.startswith(PIPELINE_SETTINGS)

    @property
    def patterns(self) -> list[str]:
        """What snapshot_download fetches of this model's repo."""
        return PIPELINE_PATTERNS if self.pipeline else MODEL_PATTERNS

    @property
    def hub(self) -> bool:
        return parse_hub_id(self.raw) is not None

    @property
    def repo_id(self) -> str | None:
        found = parse_hub_id(self.raw)
        return found[0] if found else None

    @property
    def revision(self) -> str:
        found = parse_hub_id(self.raw)
        return (found[1] if found else None) or "main"


@dataclass(frozen=True)
class Resolved:
    """A reference found on disk: the directory to load from and, for a hub id, the exact commit."""

    ref: ModelRef
    path: Path
    commit: str | None

    def describe(self) -> dict[str, Any]:
        """What job outputs and heartbeats record about the model used."""
        return {
            "setting": self.ref.setting,
            "reference": self.ref.raw,
            "repoId": self.ref.repo_id,
            "revision": self.commit,
        }


def parse_hub_id(raw: str) -> tuple[str, str | None] | None:
    """(repo id, revision) when raw is a hub id, None when it is a local path.

    A path that starts with `/`, `.` or `~`, or an existing directory, is local even when it looks like
    `org/name`."""
    if raw.startswith(("/", ".", "~")) or Path(raw).expanduser().is_dir():
        return None
    m = HUB_ID.match(raw)
    return (m["repo"], m["rev"]) if m else None


def offline(settings: Settings) -> bool:
    """BIPLANE_OFFLINE, or the standard HF_HUB_OFFLINE (read now, not at import)."""
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir(settings: Settings) -> Path:
    from huggingface_hub import constants

    return Path(settings.model_cache or constants.HF_HUB_CACHE).expanduser()


def progress_class(on_progress: Callable[[float], None]) -> type:
    """A tqdm class for snapshot_download's per-file bar: reports the fraction of files done after each one, prints
    nothing (a plain tqdm: huggingface_hub's own would go silent, and stop counting, where bars are disabled)."""
    import io

    from tqdm import tqdm

    class Report(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(disable=False, file=io.StringIO(), mininterval=0, miniters=1)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.total:
                on_progress(min(1.0, self.n / self.total))
            return shown

    return Report


def resolve(
    ref: ModelRef, settings: Settings, on_progress: Callable[[float], None] | None = None, *, download: bool = True
) -> Resolved:
    """The directory of ref: a local directory as it is; a hub id from the cache, fetched first unless offline
    (or download=False). Raises ModelMissing naming the reference and its setting."""
    if not ref.hub:
        path = Path(ref.raw).expanduser()
        if not path.is_dir():
            raise ModelMissing(f"{ref.setting}={ref.raw} does not exist")
        return Resolved(ref, path, None)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache, local_only = cache_dir(settings), offline(settings) or not download
    assert ref.repo_id is not None
    try:
        folder = snapshot_download(
            ref.repo_id,
            revision=ref.revision,
            cache_dir=cache,
            local_files_only=local_only,
            allow_patterns=ref.patterns,
            ignore_patterns=IGNORE_PATTERNS,
            tqdm_class=progress_class(on_progress) if on_progress else None,
        )
    except GatedRepoError as e:
        raise ModelMissing(f"{ref.raw} ({ref.setting}) is gated: accept its terms on the hub and set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise ModelMissing(
            f"{ref.raw} ({ref.setting}) is not on the hub, or is private (set HF_TOKEN to a token that can read it)"
        ) from e
    except RevisionNotFoundError as e:
        raise ModelMissing(f"{ref.raw} ({ref.setting}): the hub has no revision {ref.revision!r}") from e
    except LocalEntryNotFoundError as e:
        why = "offline (BIPLANE_OFFLINE / HF_HUB_OFFLINE)" if offline(settings) else "not downloaded yet"
        raise ModelMissing(
            f"{ref.raw} ({ref.setting}) is not in the model cache {cache} and the worker is {why}; "
            "fetch it with `biplane models pull` where the hub is reachable"
        ) from e
    path = Path(folder)
    return Resolved(ref, path, path.name)  # a cache snapshot folder is named by its commit hash


def cached_bytes(resolved_path: Path) -> int:
    """Bytes of the files under a model directory (a cache snapshot's links count their blobs)."""
    return sum(p.stat().st_size for p in resolved_path.rglob("*") if p.is_file())


#: Every model setting (the base models of BIPLANE_BASE_MODELS come after them).
SETTINGS = ("sd_model", "sdxl_model", "tts_model", "vocoder_model", "motion_adapter", "sdxl_motion_adapter")


def configured(settings: Settings) -> list[tuple[str, str | None]]:
    """(setting, reference or None for a demo model) of every model the deployment names."""
    from common.basemodels import parse

    out: list[tuple[str, str | None]] = [(f"BIPLANE_{n.upper()}", getattr(settings, n)) for n in SETTINGS]
    return out + [(b.setting, b.reference) for b in parse(settings.base_models)]


def status(settings: Settings, setting: str, raw: str | None, *, size: bool = False) -> dict[str, Any]:
    """Where one configured model resolves now without downloading: path, commit, cached, bytes (with size)."""
    out: dict[str, Any] = {"setting": setting, "reference": raw or "demo", "repoId": None, "revision": None}
    if raw is None:
        return out | {"cached": True, "path": None, "bytes": None}  # demo models are built, never fetched
    ref = ModelRef(setting, raw)
    out["repoId"] = ref.repo_id
    try:
        found = resolve(ref, settings, download=False)
    except ModelMissing as e:
        return out | {"cached": False, "path": None, "bytes": None, "problem": e.message}
    out |= {"revision": found.commit, "cached": True, "path": str(found.path)}
    return out | {"bytes": cached_bytes(found.path) if size else None}


def pull(settings: Settings, on_model: Callable[[str, str], Callable[[float], None]]) -> list[Resolved]:
    """Fetch every configured hub id into the cache (what `biplane models pull` runs); local ones are checked.

    on_model(setting, reference) returns the progress callback of that model's download."""
    done = []
    for setting, raw in configured(settings):
        if raw is not None:
            done.append(resolve(ModelRef(setting, raw), settings, on_model(setting, raw)))
    return done

"""Named base models the operator offers for LoRA training (`train_lora`'s `baseModel`), each with its family.

Unset, the set is `sd15` (BIPLANE_SD_MODEL) and `sdxl` (BIPLANE_SDXL_MODEL), demo models where those are unset;
`sdxl` is left out when only BIPLANE_SD_MODEL is set (a real SD model is not offered next to a random SDXL).
BIPLANE_BASE_MODELS replaces it: comma-separated `name=family:reference` entries (a reference is a local
directory, a hub id `org/name[@revision]`, or `demo`), the first being the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from common.settings import Settings

Family = Literal["sd15", "sdxl"]
FAMILIES: tuple[Family, ...] = ("sd15", "sdxl")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


@dataclass(frozen=True)
class BaseModelSpec:
    name: str
    family: Family
    reference: str | None  # None: the demo model of the family
    setting: str  # where the operator set it, named in error messages

    def public(self) -> dict[str, str | None]:
        return {"name": self.name, "family": self.family, "reference": self.reference or "demo"}


def parse(text: str) -> list[BaseModelSpec]:
    """BIPLANE_BASE_MODELS entries; ValueError naming the bad entry."""
    out: list[BaseModelSpec] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, rest = entry.partition("=")
        family, _, reference = rest.partition(":")
        name, family, reference = name.strip(), family.strip(), reference.strip()
        if not _NAME.match(name) or family not in FAMILIES or not reference:
            raise ValueError(
                f"BIPLANE_BASE_MODELS entry {entry[:100]!r} is not name=family:reference "
                f"(family one of {', '.join(FAMILIES)}; reference a directory, org/name[@revision] or demo)"
            )
        if any(b.name == name for b in out):
            raise ValueError(f"BIPLANE_BASE_MODELS names {name!r} twice")
        ref = None if reference == "demo" else reference
        out.append(BaseModelSpec(name, family, ref, f"BIPLANE_BASE_MODELS[{name}]"))
    return out


def base_models(settings: Settings) -> list[BaseModelSpec]:
    if settings.base_models.strip():
        return parse(settings.base_models)
    out = [BaseModelSpec("sd15", "sd15", settings.sd_model, "BIPLANE_SD_MODEL")]
    if settings.sdxl_model is not None or settings.sd_model is None:
        out.append(BaseModelSpec("sdxl", "sdxl", settings.sdxl_model, "BIPLANE_SDXL_MODEL"))
    return out


def find(settings: Settings, name: str | None) -> BaseModelSpec | None:
    """The base model called name (None: the default, the first); None when there is no such name."""
    models = base_models(settings)
    if name is None:
        return models[0]
    return next((b for b in models if b.name == name), None)

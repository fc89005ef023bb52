"""Model references and base-model settings: what is a hub id, what a directory; bad entries stop at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.basemodels import base_models, find, parse
from common.modelrefs import ModelRef, offline, parse_hub_id
from common.settings import Settings


def test_hub_ids_and_local_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_hub_id("stabilityai/stable-diffusion-xl-base-1.0") == (
        "stabilityai/stable-diffusion-xl-base-1.0",
        None,
    )
    assert parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")
    assert parse_hub_id("org/name@refs/pr/3") == ("org/name", "refs/pr/3")
    for local in ("/models/sd15", "./org/name", "~/sd", "sd15", "a/b/c", "org/name@", "org name/x"):
        assert parse_hub_id(local) is None, local
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_hub_id("org/name") is None  # an existing directory wins
    ref = ModelRef("BIPLANE_SD_MODEL", "runwayml/stable-diffusion-v1-5@abc")
    assert (ref.hub, ref.repo_id, ref.revision) == (True, "runwayml/stable-diffusion-v1-5", "abc")
    assert ModelRef("X", "org/other").revision == "main"

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not offline(Settings())
    assert offline(Settings(offline=True))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline(Settings())


def test_base_models_default_to_sd15_and_sdxl_and_parse_the_setting() -> None:
    assert [(b.name, b.family, b.reference) for b in base_models(Settings())] == [
        ("sd15", "sd15", None),
        ("sdxl", "sdxl", None),
    ]
    default = Settings(sd_model="org/sd@v2")  # a real SD is not offered next to a random-weight SDXL
    assert [(b.name, b.reference) for b in base_models(default)] == [("sd15", "org/sd@v2")]
    both = Settings(sd_model="/m/sd", sdxl_model="org/xl")
    assert [(b.name, b.reference) for b in base_models(both)] == [("sd15", "/m/sd"), ("sdxl", "org/xl")]
    assert find(default, None).name == "sd15" and find(default, "nope") is None  # type: ignore[union-attr]
    own = parse(" mine=sdxl:/models/x , demo15=sd15:demo")
    assert [(b.name, b.family, b.reference, b.setting) for b in own] == [
        ("mine", "sdxl", "/models/x", "BIPLANE_BASE_MODELS[mine]"),
        ("demo15", "sd15", None, "BIPLANE_BASE_MODELS[demo15]"),
    ]
    for bad in ("x=sd3:org/m", "x=sd15:", "X Y=sd15:a/b", "a=sd15:a/b,a=sdxl:c/d", "nothing"):
        with pytest.raises(ValueError, match="BIPLANE_BASE_MODELS"):
            Settings(base_models=bad)


def test_download_progress_reports_the_fraction_of_files_done() -> None:
    """snapshot_download drives its per-file bar through huggingface_hub's thread map, as here."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from huggingface_hub.utils.tqdm import hf_thread_map  # the map snapshot_download drives its bar with

    from common.modelrefs import progress_class

    seen: list[float] = []
    disable_progress_bars()  # as a quiet worker has them: the report must not depend on it
    try:
        hf_thread_map(lambda f: f, ["a", "b", "c", "d"], tqdm_class=progress_class(seen.append), max_workers=2)
    finally:
        enable_progress_bars()
    assert seen and seen == sorted(seen) and seen[-1] == 1.0 and seen[0] <= 0.5

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


def test_a_pipeline_fetches_its_components_and_a_model_its_weights_never_single_file_checkpoints() -> None:
    from huggingface_hub.utils import filter_repo_objects

    from common.modelrefs import IGNORE_PATTERNS

    sdxl_repo = [
        "model_index.json",
        "sd_xl_base_1.0.safetensors",  # the single-file checkpoint: 6.9 GB the pipeline never loads
        "sd_xl_offset_example-lora_1.0.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "text_encoder_2/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "safety_checker/model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    pipeline = ModelRef("BIPLANE_BASE_MODELS[xl]", "stabilityai/stable-diffusion-xl-base-1.0")
    fetched = set(filter_repo_objects(sdxl_repo, allow_patterns=pipeline.patterns, ignore_patterns=IGNORE_PATTERNS))
    assert fetched == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder_2/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "vae/diffusion_pytorch_model.safetensors",
    }
    adapter = ModelRef("BIPLANE_MOTION_ADAPTER", "guoyww/animatediff-motion-adapter-v1-5-2")
    files = ["config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"]
    got = set(filter_repo_objects(files, allow_patterns=adapter.patterns, ignore_patterns=IGNORE_PATTERNS))
    assert got == {"config.json", "diffusion_pytorch_model.safetensors"}

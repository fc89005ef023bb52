"""Hub ids from a pre-seeded huggingface_hub cache with HF_HUB_OFFLINE=1 (no network): a LoRA job on one
completes and records the exact revision; a model missing from the cache fails its node naming the id and the
setting; the worker's heartbeat reports what each model resolves to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from common.models.graph_schema import GraphDocument
from common.models.manifest_schema import CapabilityManifest
from common.settings import Settings
from common.storage import Storage
from tests.support.hubcache import seed_hub_cache
from tests.support.jobs import Harness, eventually, graph
from tests.support.media import put_images
from tests.support.processes import Plane
from worker.ml.demo_models import DemoModels

pytestmark = pytest.mark.ml

REPO = "biplane-test/tiny-sd"


def lora_job(storage: Storage, donor: str, params: dict[str, Any]) -> GraphDocument:
    """One train_lora node at 32 px; its images (files of the donor job) and prompt in its context."""
    keys = put_images(storage, donor, n=2, size=32)
    doc = graph([("train", "train_lora", "data", {"resolution": 32, "sampleEvery": 0, "sampleSteps": 1, **params})], [])
    return doc.model_copy(update={"context": {"images": keys, "prompt": "a photo of sks"}})


def test_the_seeded_cache_is_what_the_hub_library_reads(demo_dir: Path, tmp_path: Path) -> None:
    from huggingface_hub import scan_cache_dir, snapshot_download

    commit = seed_hub_cache(tmp_path, REPO, DemoModels(demo_dir).sd)
    repo = next(iter(scan_cache_dir(tmp_path).repos))
    assert repo.repo_id == REPO and repo.repo_type == "model" and set(repo.refs) == {"main"}
    assert [r.commit_hash for r in repo.revisions] == [commit] and repo.nb_files > 5
    found = snapshot_download(REPO, cache_dir=tmp_path, local_files_only=True)
    assert Path(found).name == commit and (Path(found) / "unet" / "config.json").is_file()


def test_offline_references_resolve_from_the_cache_or_name_what_is_missing(
    ml_settings: Settings, demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.ml.models import ModelMissing, resolve

    commit = seed_hub_cache(tmp_path, REPO, DemoModels(demo_dir).sd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = ml_settings.model_copy(update={"model_cache": tmp_path})
    for reference in (REPO, f"{REPO}@main", f"{REPO}@{commit}"):
        paths = resolve(settings.model_copy(update={"sd_model": reference}), "sd_model")
        assert paths.sd == tmp_path / f"models--biplane-test--tiny-sd/snapshots/{commit}" and not paths.demo
        assert paths.used["sd_model"] == {
            "setting": "BIPLANE_SD_MODEL",
            "reference": reference,
            "repoId": REPO,
            "revision": commit,
        }
    for reference in ("biplane-test/absent", f"{REPO}@v2"):
        with pytest.raises(ModelMissing) as err:
            resolve(settings.model_copy(update={"sd_model": reference}), "sd_model")
        assert reference in err.value.message and "BIPLANE_SD_MODEL" in err.value.message
        assert "offline" in err.value.message and str(tmp_path) in err.value.message


async def test_a_lora_job_on_a_cached_hub_id_completes_and_a_missing_one_fails_by_name(
    redis: Redis, ml_settings: Settings, storage: Storage, plane_factory: Callable[..., Plane], demo_dir: Path
) -> None:
    cache = ml_settings.demo_model_dir.parent / "hub-cache"
    commit = seed_hub_cache(cache, REPO, DemoModels(demo_dir).sd)
    settings = ml_settings.model_copy(
        update={"model_cache": cache, "base_models": f"cached=sd15:{REPO},missing=sd15:biplane-test/absent@v1"}
    )
    worker = plane_factory("worker", settings, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    assert worker.proc is not None
    h = Harness(redis, settings)
    mine: list[CapabilityManifest] = []

    async def beat() -> bool:
        mine[:] = [m for m in await h.bridge.live_manifests(30) if (m.instance or "").endswith(f"-{worker.proc.pid}")]
        return bool(mine)

    await eventually(beat, timeout=60)
    models = {m.setting: m for m in mine[0].models}
    assert models["BIPLANE_BASE_MODELS[cached]"].revision == commit and models["BIPLANE_BASE_MODELS[cached]"].cached
    assert models["BIPLANE_BASE_MODELS[missing]"].cached is False
    assert models["BIPLANE_SD_MODEL"].reference == "demo"

    donor = await h.donor()
    params = {"steps": 3, "checkpointEvery": 0, "baseline": False}
    ok = await h.submit(lora_job(storage, donor, params))
    missing = await h.submit(lora_job(storage, donor, {**params, "baseModel": "missing"}))
    done = await h.wait_final(ok.job_id, timeout=180)
    assert done.status == "completed", done.error
    out = done.graph.nodes[0].output or {}
    assert out["baseModel"] == {
        "name": "cached",
        "family": "sd15",
        "setting": "BIPLANE_BASE_MODELS[cached]",
        "reference": REPO,
        "repoId": REPO,
        "revision": commit,
    }
    assert out["models"]["sd_model"]["revision"] == commit  # every model the run used, by setting
    phases = [e.phase for e in await h.events.replay(ok.job_id) if e.kind == "progress"]
    assert "loading-model" in phases
    failed = await h.wait_final(missing.job_id, timeout=120)
    assert failed.status == "failed"
    node = failed.graph.nodes[0]
    assert node.attempts == 1  # a missing model is not retried
    for part in ("biplane-test/absent@v1", "BIPLANE_BASE_MODELS[missing]", "offline", "biplane models pull"):
        assert part in (node.error or ""), node.error


def test_biplane_models_list_and_pull(demo_dir: Path, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.support.processes import ROOT

    commit = seed_hub_cache(tmp_path / "cache", REPO, DemoModels(demo_dir).sd)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIPLANE_", "HF_"))}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "BIPLANE_MODEL_CACHE": str(tmp_path / "cache"),
        "COLUMNS": "300",
        "BIPLANE_SD_MODEL": REPO,
        "BIPLANE_TTS_MODEL": str(DemoModels(demo_dir).tts),
        "BIPLANE_VOCODER_MODEL": "biplane-test/absent",
    }

    def biplane(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "biplane"), *args]
        return subprocess.run(command, env=env | extra, cwd=ROOT, capture_output=True, text=True, timeout=120)

    listed = biplane("--json", "models", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {r["setting"]: r for r in json.loads(listed.stdout)}
    sd = rows["BIPLANE_SD_MODEL"]
    assert (sd["reference"], sd["revision"], sd["cached"]) == (REPO, commit, True)
    assert sd["path"].endswith(commit) and sd["bytes"] > 1_000_000
    tts = rows["BIPLANE_TTS_MODEL"]
    assert tts["cached"] and tts["revision"] is None and tts["bytes"] > 0
    vocoder = rows["BIPLANE_VOCODER_MODEL"]
    assert vocoder["cached"] is False and "biplane-test/absent" in vocoder["problem"]
    assert rows["BIPLANE_SDXL_MODEL"]["reference"] == "demo"
    human = biplane("models", "list")
    assert human.returncode == 0 and "(offline)" in human.stdout and "BIPLANE_VOCODER_MODEL" in human.stdout

    failed = biplane("models", "pull")
    assert failed.returncode == 1
    assert "biplane-test/absent (BIPLANE_VOCODER_MODEL) is not in the model cache" in " ".join(failed.stderr.split())
    pulled = biplane("--json", "models", "pull", BIPLANE_VOCODER_MODEL="")
    assert pulled.returncode == 0, pulled.stderr
    assert {(r["setting"], r["revision"]) for r in json.loads(pulled.stdout)} == {
        ("BIPLANE_SD_MODEL", commit),
        ("BIPLANE_TTS_MODEL", None),
    }

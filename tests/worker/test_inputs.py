"""Input checks of the ML tasks that fail fast, before any model loads (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import TaskInputError
from common.params import TrainLoraParams, TrainVoiceParams
from common.settings import Settings
from common.storage import Storage
from tests.worker.conftest import Run
from worker.ml.models import ModelMissing, check, uses_demo_models
from worker.tasks import inputs


@pytest.fixture
def run(settings: Settings, storage: Storage) -> Run:
    """Without the demo models: these checks must fail before any model loads."""
    return Run(settings, storage)


def test_dependency_outputs_win_over_the_job_context(run: Run) -> None:
    ctx = run.ctx("n", "train_lora", context={"prompt": "ctx", "narration": "told"}, inputs={"prep": {"prompt": "dep"}})
    assert inputs.value(ctx, "prompt") == "dep" and inputs.value(ctx, "narration") == "told"
    assert inputs.value(ctx, "missing", 3) == 3
    assert inputs.key_of({"key": "jobs/a/b.bin"}) == "jobs/a/b.bin" and inputs.key_of(None) is None


def test_bad_inputs_fail_without_retry(run: Run) -> None:
    from worker.tasks.lora import train_lora
    from worker.tasks.voice import train_voice

    with pytest.raises(TaskInputError, match="images"):
        train_lora(run.ctx("t", "train_lora", context={"prompt": "x"}), TrainLoraParams())
    with pytest.raises(TaskInputError, match="not in storage"):
        train_lora(run.ctx("t", "train_lora", context={"images": ["jobs/none/x.png"]}), TrainLoraParams())
    with pytest.raises(TaskInputError, match="one transcript per clip"):
        train_voice(run.ctx("v", "train_voice", context={"clips": ["a.wav"], "transcripts": []}), TrainVoiceParams())


def test_configured_models_are_checked_by_name(run: Run, tmp_path: Path) -> None:
    assert uses_demo_models(run.settings)
    empty = tmp_path / "sd"
    empty.mkdir()
    with pytest.raises(ModelMissing, match=r"BIPLANE_SD_MODEL=.*/sd lacks model_index.json"):
        check(run.settings.model_copy(update={"sd_model": str(empty)}), "sd_model")
    with pytest.raises(ModelMissing, match="BIPLANE_VOCODER_MODEL=/nowhere does not exist"):
        check(run.settings.model_copy(update={"vocoder_model": "/nowhere"}), "vocoder_model")

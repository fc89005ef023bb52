"""Worker ML fixtures: demo models built once per session, in-process task runs with a real S3 context."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from common.context import TaskContext
from common.settings import Settings
from common.storage import Storage
from tests.support.processes import ROOT


@pytest.fixture(scope="session")
def demo_dir() -> Iterator[Path]:
    """The demo models where worker processes started by tests and `make run` find them (the default
    BIPLANE_DEMO_MODEL_DIR, .dev/demo-models): built once per checkout by the worker's own builder (locked, so
    two test processes wait for one build), and the demo LLMs trained there once too."""
    import torch

    from worker.ml.demo_models import ensure_demo_models

    torch.set_num_threads(2)
    root = ROOT / Settings.model_fields["demo_model_dir"].default
    ensure_demo_models(root, sdxl=True)
    yield root


@pytest.fixture
def ml_settings(settings: Settings, demo_dir: Path) -> Settings:
    return settings.model_copy(update={"demo_model_dir": demo_dir})


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

    def steps(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """Progress events of training or denoising steps (phase reports carry no step)."""
        return [e for e in self.kinds("progress", node_id) if e.get("step") is not None]


@pytest.fixture
def run(ml_settings: Settings, storage: Storage) -> Run:
    return Run(ml_settings, storage)

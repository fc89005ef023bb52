"""What a task receives: a typed context with its inputs, a progress reporter, artifacts and cancel."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import paths
from common.errors import JobCanceled
from common.models.artifact_schema import ArtifactMeta
from common.settings import Settings
from common.storage import Storage


@dataclass
class TaskContext:
    """One node run. Methods are safe to call from the task's worker thread.

    `inputs` holds the outputs of the node's dependencies by node id; `job_inputs` the job-wide inputs (the
    graph's `context`).
    """

    job_id: str
    node_id: str
    service: str
    attempt: int
    settings: Settings
    storage: Storage | None
    job_inputs: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    emit: Callable[[dict[str, Any]], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    #: what the node is doing now (loading-model, caching, baseline, training, preview, denoising, ...)
    current_phase: str = "starting"

    def phase(self, name: str, fraction: float | None = None, *, eta_seconds: float | None = None) -> None:
        """Enter phase `name` (or report its progress `fraction`); every event after this carries it."""
        self.current_phase = name
        self.emit(
            {
                "kind": "progress",
                "nodeId": self.node_id,
                "phase": name,
                "phaseProgress": None if fraction is None else max(0.0, min(1.0, fraction)),
                "etaSeconds": eta_seconds,
            }
        )

    def progress(
        self,
        fraction: float | None = None,
        *,
        step: int | None = None,
        total_steps: int | None = None,
        loss: float | None = None,
        eta_seconds: float | None = None,
        phase_progress: float | None = None,
    ) -> None:
        """Report node progress in the current phase; fraction defaults to step/total_steps."""
        if fraction is None and step is not None and total_steps:
            fraction = step / total_steps
        self.emit(
            {
                "kind": "progress",
                "nodeId": self.node_id,
                "nodeProgress": None if fraction is None else max(0.0, min(1.0, fraction)),
                "step": step,
                "totalSteps": total_steps,
                "loss": loss if loss is None or math.isfinite(loss) else None,
                "etaSeconds": eta_seconds,
                "phase": self.current_phase,
                "phaseProgress": phase_progress,
            }
        )

    def log(self, message: str, level: str = "info") -> None:
        self.emit({"kind": "log", "nodeId": self.node_id, "message": message[:2000], "level": level})

    @property
    def canceled(self) -> bool:
        return self.cancel.is_set()

    def check_cancel(self) -> None:
        """Raise JobCanceled when the job was canceled (or the round aborted); call between steps."""
        if self.cancel.is_set():
            raise JobCanceled(f"job {self.job_id} canceled")

    def artifact_key(self, name: str) -> str:
        return paths.node_key(self.job_id, self.node_id, name)

    def put_artifact(
        self, name: str, data: bytes | Path, content_type: str | None = None, *, preview: bool = False
    ) -> ArtifactMeta:
        """Store bytes or a file under jobs/<job>/<node>/<name> and announce it as an artifact or preview."""
        if self.storage is None:
            raise RuntimeError("this process has no storage configured")
        key = self.artifact_key(name)
        if isinstance(data, Path):
            meta = self.storage.put_file(key, data, content_type)
        else:
            meta = self.storage.put_bytes(key, data, content_type)
        meta = meta.model_copy(update={"name": name})
        self.emit(
            {
                "kind": "preview" if preview else "artifact",
                "nodeId": self.node_id,
                "artifact": meta.model_dump(by_alias=True, mode="json"),
            }
        )
        return meta

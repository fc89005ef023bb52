"""What the job page shows, as plain data: a job record folded with its events (no UI code here)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from client.api import FINAL_STATUSES
from common.models.artifact_schema import ArtifactMeta
from common.models.event_schema import Event
from common.models.job_schema import JobRecord

LOG_LINES = 500  #: log lines kept per page
LOSS_POINTS = 2000  #: loss points kept per node (older ones are thinned out)


@dataclass
class NodeView:
    id: str
    service: str
    plane: str
    status: str = "pending"
    progress: float = 0.0
    step: int | None = None
    total_steps: int | None = None
    eta_seconds: float | None = None
    phase: str | None = None  #: what a running node is doing (loading-model, caching, training...)
    phase_progress: float | None = None
    error: str | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    _rate_origin: tuple[float, int] | None = None  # (ts, step) of the first progress event, for a local ETA

    def on_progress(self, event: Event) -> None:
        if event.phase is not None:
            if event.phase != self.phase:
                self.phase_progress = None
            self.phase = event.phase
            self.phase_progress = event.phase_progress if event.phase_progress is not None else self.phase_progress
        if event.node_progress is not None:
            self.progress = event.node_progress
        if event.step is not None:
            self.step = event.step
        if event.total_steps is not None:
            self.total_steps = event.total_steps
        self.eta_seconds = event.eta_seconds if event.eta_seconds is not None else self._estimate_eta(event)
        if event.loss is not None and event.step is not None:
            self.losses.append((event.step, event.loss))
            if len(self.losses) > LOSS_POINTS:
                self.losses = self.losses[::2]

    def _estimate_eta(self, event: Event) -> float | None:
        """Remaining steps at the rate seen since this node's first progress event."""
        if event.step is None or not self.total_steps:
            return None
        if self._rate_origin is None or event.step < self._rate_origin[1]:
            self._rate_origin = (event.ts, event.step)
            return None
        ts0, step0 = self._rate_origin
        if event.step == step0 or event.ts <= ts0:
            return None
        per_step = (event.ts - ts0) / (event.step - step0)
        return max(0.0, (self.total_steps - event.step) * per_step)


@dataclass
class JobView:
    """The job as the page shows it. `apply` folds one event; counters tell the page what is new."""

    job_id: str
    workflow: str
    status: str
    progress: float
    created_at: float
    error: str | None
    nodes: dict[str, NodeView]
    seq: int = 0
    previews: list[ArtifactMeta] = field(default_factory=list)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    logs_total: int = 0  #: lines ever appended, so the page can push only the new ones
    artifacts_changed: bool = True  #: an artifact appeared or the job ended: reload the artifact list

    @classmethod
    def from_record(cls, job: JobRecord) -> JobView:
        nodes = {
            n.id: NodeView(n.id, n.service, n.plane, n.status or "pending", n.progress or 0.0, error=n.error)
            for n in job.graph.nodes
        }
        return cls(job.job_id, job.workflow, job.status, job.progress or 0.0, job.created_at, job.error, nodes)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def apply(self, event: Event) -> None:
        if event.seq <= self.seq:
            return  # a replayed event this view already holds
        self.seq = event.seq
        node = self.nodes.get(event.node_id or "")
        if event.progress is not None:
            self.progress = event.progress
        if event.kind == "status" and event.status:
            self.status = event.status
            self.error = event.error or self.error
            self.artifacts_changed = self.artifacts_changed or self.final
            if event.status == "completed":
                self.progress = 1.0
            self.log(f"job {event.status}" + (f": {event.error}" if event.error else ""), event)
        elif event.kind == "node" and node is not None and event.status:
            node.status = event.status
            node.error = event.error
            if event.status == "completed":
                node.progress = 1.0
                node.eta_seconds = 0.0
            self.log(f"{node.id}: {event.status}" + (f": {event.error}" if event.error else ""), event)
        elif event.kind == "progress" and node is not None:
            node.on_progress(event)
        elif event.kind == "preview" and event.artifact is not None:
            self.previews.append(event.artifact)
        elif event.kind == "artifact":
            self.artifacts_changed = True
        elif event.kind == "log" and event.message:
            prefix = f"{event.node_id}: " if event.node_id else ""
            self.log(prefix + event.message, event)

    def log(self, line: str, event: Event) -> None:
        level = (event.level or "info").upper()
        self.logs.append(f"#{event.seq} {level} {line}")
        self.logs_total += 1

    def new_logs(self, shown: int) -> list[str]:
        """Lines appended after the first `shown` ones (at most the kept window)."""
        missing = min(self.logs_total - shown, len(self.logs))
        return list(self.logs)[len(self.logs) - missing :] if missing > 0 else []


def media_kind(content_type: str) -> str | None:
    """'image', 'audio' or 'video' for the types the page can show inline."""
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else None

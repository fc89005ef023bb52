"""What the `biplane` CLI draws: tables of jobs, nodes, artifacts and services, and a node's progress line."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from client.api import artifact_path
from client.format import age, human_bytes, percent
from common.models.artifact_schema import ArtifactMeta
from common.models.event_schema import Event
from common.models.job_schema import JobRecord


def jobs_table(records: list[JobRecord]) -> Table:
    table = Table("job", "workflow", "status", "progress", "created")
    for j in records:
        table.add_row(j.job_id, j.workflow, j.status, percent(j.progress), age(j.created_at))
    return table


def job_table(j: JobRecord) -> Table:
    """One job: a row per node, the job's status in the title."""
    table = Table("node", "service", "plane", "status", "progress", "attempts", "error")
    for n in j.graph.nodes:
        table.add_row(
            n.id, n.service, n.plane, n.status or "", percent(n.progress), str(n.attempts or 0), (n.error or "")[:60]
        )
    table.title = f"{j.job_id}  {j.workflow}  {j.status}  {percent(j.progress)}"
    return table


def artifacts_table(job_id: str, items: list[ArtifactMeta]) -> Table:
    table = Table("name", "size", "sha256", "type")
    for a in items:
        table.add_row(artifact_path(job_id, a), human_bytes(a.size), a.sha256[:16] + "…", a.content_type)
    return table


def services_table(caps: dict[str, Any]) -> Table:
    table = Table("service", "plane", "workers", "description")
    for s in caps["services"]:
        table.add_row(s["service"], s["plane"], str(s["workers"]), s["description"][:70])
    return table


def progress_info(ev: Event) -> str:
    """`training 40% 12/30 loss 0.1234 ETA 8s`: a progress event as the node's bar shows it."""
    parts = [ev.phase or ""]
    if ev.phase_progress is not None:
        parts.append(f"{ev.phase_progress:.0%}")
    if ev.step is not None:
        parts.append(f"{ev.step}/{ev.total_steps}")
    if ev.loss is not None:
        parts.append(f"loss {ev.loss:.4f}")
    if ev.eta_seconds is not None:
        parts.append(f"ETA {ev.eta_seconds:.0f}s")
    return " ".join(p for p in parts if p)

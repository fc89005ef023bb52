"""What a client (the UI's form, `biplane train`) says about fitting a job to the alive workers.

Pure functions over the answer of GET /api/capabilities: the workers' recommendation, the user's options over
it, and an estimate. The figures come from common/estimate.py, the same code control uses for the `warnings`
of a submission, so a client and control never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.estimate import Node, Worker, duration, estimate, merge_options, options_text

__all__ = [
    "describe_workers",
    "duration",
    "estimate_text",
    "job_nodes",
    "merge_options",
    "options_text",
    "recommended",
    "workers",
]

#: The nodes of the form's workflows (control's templates, as the form submits them).
_WORKFLOW_NODES: dict[str, list[tuple[str, str]]] = {
    "lora": [("prepare_assets", "control"), ("train_lora", "data"), ("publish_artifacts", "control")],
    "studio": [
        ("prepare_assets", "control"),
        ("train_lora", "data"),
        ("train_voice", "data"),
        ("render_video", "data"),
        ("publish_artifacts", "control"),
    ],
}


def workers(caps: Mapping[str, Any]) -> list[Worker]:
    return [Worker.from_json(w) for w in caps.get("workers") or () if w.get("plane") == "data"]


def recommended(caps: Mapping[str, Any], service: str) -> dict[str, Any]:
    return dict((caps.get("recommended") or {}).get(service) or {})


def describe_workers(caps: Mapping[str, Any]) -> str:
    """`1 worker: cpu, fp32, demo models` / `2 workers: cuda (NVIDIA H100), bf16; cpu, fp32, demo models`."""
    entries = [w for w in caps.get("workers") or () if w.get("plane") == "data"]
    kinds = []
    for w in entries:
        device = f"{w.get('device') or 'unknown device'}" + (f" ({w['gpuName']})" if w.get("gpuName") else "")
        parts = [device, w.get("precision")] + (["demo models"] if w.get("demo") else [])
        kinds.append(", ".join(p for p in parts if p))
    return f"{len(entries)} worker{'s' if len(entries) != 1 else ''}: {'; '.join(dict.fromkeys(kinds))}"


def job_nodes(workflow: str, options: Mapping[str, Any], caps: Mapping[str, Any]) -> list[Node]:
    """The form's job as estimate nodes: train_lora with the form's options, the rest as the form sends them."""
    sent = {"train_lora": dict(options)} | {s: recommended(caps, s) for s in ("train_voice", "render_video")}
    return [(service, plane, sent.get(service, {})) for service, plane in _WORKFLOW_NODES[workflow]]


def estimate_text(workflow: str, options: Mapping[str, Any], images: int, caps: Mapping[str, Any]) -> tuple[str, bool]:
    """(what the form shows, whether it is over the deployment's limit)."""
    alive = workers(caps)
    if not alive:
        return "No worker is alive to run this job: it will wait in the queue until one starts.", True
    est = estimate(job_nodes(workflow, options, caps), alive, images)
    if est is None:
        return "No estimate: no alive worker runs every part of this job, or an option is out of range.", True
    basis = "measured" if est.measured else "expected"
    text = f"Estimated duration: {est.text()} on the alive workers ({basis} speed; {describe_workers(caps)})."
    limit = caps.get("estimateWarnSeconds")
    if isinstance(limit, int | float) and est.seconds > limit:
        text += (
            f" That is longer than the {duration(limit).removeprefix('about ')} this deployment expects:"
            " fewer steps or a lower resolution make it shorter."
        )
        return text, True
    return text, False

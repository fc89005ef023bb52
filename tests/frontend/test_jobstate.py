"""JobView folds a job record and its events the way the job page shows them; formatting helpers."""

from __future__ import annotations

from typing import Any

from client.api import RemoteError, artifact_path
from client.format import age, duration, human_bytes, percent
from common.models.artifact_schema import ArtifactMeta
from common.models.event_schema import Event
from common.models.job_schema import JobRecord
from common.params import TrainLoraParams
from frontend import options as form_options
from frontend.jobstate import LOG_LINES, JobView, media_kind
from frontend.pages.new_job import explain

SHA = "0" * 64


def record() -> JobRecord:
    nodes = [
        {"id": "prepare", "service": "prepare_assets", "plane": "control", "status": "completed", "progress": 1},
        {"id": "train_lora", "service": "train_lora", "plane": "data"},
    ]
    graph = {"schemaVersion": "biplane.graph.v1", "workflow": "lora", "nodes": nodes, "edges": []}
    return JobRecord.model_validate(
        {"jobId": "j1", "workflow": "lora", "status": "running", "createdAt": 1.0, "updatedAt": 2.0, "graph": graph}
    )


def ev(seq: int, kind: str, ts: float = 100.0, **fields: Any) -> Event:
    return Event.model_validate({"jobId": "j1", "seq": seq, "ts": ts, "kind": kind, **fields})


def test_events_fold_into_nodes_progress_losses_and_logs() -> None:
    view = JobView.from_record(record())
    assert view.nodes["prepare"].status == "completed" and view.nodes["train_lora"].status == "pending"
    view.apply(ev(1, "node", nodeId="train_lora", status="running"))
    view.apply(ev(2, "progress", ts=100, nodeId="train_lora", nodeProgress=0.1, step=1, totalSteps=10, loss=2.0))
    view.apply(ev(3, "progress", ts=102, nodeId="train_lora", nodeProgress=0.2, step=2, totalSteps=10, loss=1.5))
    node = view.nodes["train_lora"]
    assert (node.status, node.step, node.total_steps) == ("running", 2, 10)
    assert node.losses == [(1, 2.0), (2, 1.5)]
    assert node.eta_seconds == 16.0, "8 steps left at 2 s per step, measured when the task gives no ETA"
    view.apply(ev(4, "progress", ts=103, nodeId="train_lora", nodeProgress=0.3, step=3, totalSteps=10, etaSeconds=5))
    assert node.eta_seconds == 5, "the task's own ETA wins"
    view.apply(ev(5, "progress", nodeId="train_lora", progress=0.6, nodeProgress=0.5))
    assert view.progress == 0.6
    art = {"key": "jobs/j1/train_lora/samples/1.png", "name": "samples/1.png", "size": 3, "sha256": SHA}
    view.apply(ev(6, "preview", nodeId="train_lora", artifact={**art, "contentType": "image/png", "created": 1}))
    assert [artifact_path("j1", a) for a in view.previews] == ["train_lora/samples/1.png"]
    view.artifacts_changed = False
    view.apply(ev(7, "log", nodeId="train_lora", message="hello", level="warning"))
    view.apply(ev(8, "node", nodeId="train_lora", status="completed"))
    view.apply(ev(9, "status", status="completed"))
    assert view.final and view.progress == 1.0 and view.artifacts_changed
    assert node.progress == 1.0 and node.eta_seconds == 0
    assert view.new_logs(0) == [
        "#1 INFO train_lora: running",
        "#7 WARNING train_lora: hello",
        "#8 INFO train_lora: completed",
        "#9 INFO job completed",
    ]
    assert view.new_logs(3) == ["#9 INFO job completed"]


def test_replayed_events_are_ignored_and_the_log_window_is_bounded() -> None:
    view = JobView.from_record(record())
    view.apply(ev(2, "status", status="running"))
    view.apply(ev(1, "status", status="queued"))
    assert view.status == "running" and view.seq == 2
    for i in range(LOG_LINES + 10):
        view.apply(ev(3 + i, "log", message=f"line {i}"))
    assert len(view.new_logs(0)) == LOG_LINES
    assert view.new_logs(view.logs_total - 1) == [f"#{LOG_LINES + 12} INFO line {LOG_LINES + 9}"]


def test_failure_keeps_the_error() -> None:
    view = JobView.from_record(record())
    view.apply(ev(1, "node", nodeId="train_lora", status="failed", error="out of memory"))
    view.apply(ev(2, "status", status="failed", error="train_lora failed"))
    assert view.nodes["train_lora"].error == "out of memory"
    assert view.error == "train_lora failed" and view.final


def test_helpers() -> None:
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 1024**3) == "3.0 GiB"
    assert duration(None) == "" and duration(42) == "42 s" and duration(185) == "3 min 5 s"
    assert duration(7800) == "2 h 10 min"
    assert age(100, now=105) == "just now" and age(100, now=400) == "5 min ago" and age(0, now=90000) == "1 d ago"
    assert percent(0.456) == "46 %" and percent(None) == "0 %"
    assert media_kind("audio/wav") == "audio" and media_kind("video/mp4") == "video"
    assert media_kind("application/octet-stream") is None
    meta = ArtifactMeta(key="other/x.bin", size=1, sha256=SHA, content_type="a/b", created=1)  # type: ignore[call-arg]
    assert artifact_path("j1", meta) == "other/x.bin"


def test_form_options_come_from_the_params_schema() -> None:
    caps = {"services": [{"service": "train_lora", "params": TrainLoraParams.model_json_schema(by_alias=True)}]}
    specs = form_options.from_schema(form_options.service_schema(caps, "train_lora"))
    assert list(specs) == list(form_options.LABELS)
    assert (specs["steps"].low, specs["steps"].high, specs["steps"].step) == (1, 100_000, 1)
    assert (specs["resolution"].low, specs["resolution"].step) == (32, 8)
    assert specs["learningRate"].step is None and not specs["learningRate"].integer
    assert form_options.problems(specs, {"steps": 0, "resolution": 100, "learningRate": 0, "seed": None}) == [
        "Advanced option steps: must be at least 1.",
        "Advanced option resolution: must be a multiple of 8.",
        "Advanced option learningRate: must be more than 0.",
    ]
    assert form_options.problems(specs, {"rank": 2.5}) == ["Advanced option rank: must be a whole number."]
    assert form_options.problems(specs, form_options.defaults(specs)) == []
    assert form_options.from_schema({}) == {}  # control not answered yet: no options, the service's defaults
    assert form_options.defaults(specs, {"steps": 120, "sampleSteps": 10})["steps"] == 120
    assert form_options.defaults(specs) == {
        "triggerWord": "",
        "steps": 500,
        "rank": 16,
        "learningRate": 1e-4,
        "resolution": 512,
        "imageFit": "crop",
        "seed": 0,
        "sampleEvery": 100,
        "sampleSteps": 20,
        "checkpointEvery": 100,
        "batchSize": 1,
        "alpha": None,
        "precision": "auto",
        "optimizer": "adamw",
        "gradientCheckpointing": False,
        "noiseOffset": 0.0,
        "snrGamma": None,
        "cacheLatents": True,
        "baseline": True,
    }
    untouched = form_options.sent(specs, form_options.defaults(specs))
    assert not {"triggerWord", "alpha", "snrGamma"} & set(untouched), "empty: the service's defaults apply"
    assert TrainLoraParams.model_validate(untouched) == TrainLoraParams(), "the form's defaults are the service's"


def test_refusal_text() -> None:
    e = RemoteError(413, "too_large", "images[2] is 30000000 bytes; the limit is 20971520", "/images/2")
    assert explain(e) == (
        "Too large (field images/2): images[2] is 30000000 bytes; the limit is 20971520 [413 too_large]"
    )
    assert explain(RemoteError(503, "unavailable", "busy")).startswith("The control plane refused the job: busy")

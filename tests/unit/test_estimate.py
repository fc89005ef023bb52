"""common/estimate.py: job estimates from measured or prior step times, and per-worker recommendations."""

from __future__ import annotations

from typing import Any

import pytest

from common.estimate import PLANS, Worker, assess, duration, estimate, merge_options, recommended
from common.models.graph_schema import GraphDocument
from common.models.manifest_schema import CapabilityManifest, StepSeconds
from common.params import RenderVideoParams, TrainLoraParams, TrainVoiceParams

ALL = frozenset({"train_lora", "train_voice", "render_video"})
CPU_DEMO = Worker("cpu-demo", ("cpu", True), ALL)
GPU_REAL = Worker("gpu", ("cuda", False), ALL)


def manifest(instance: str, device: str, demo: bool, measured: list[StepSeconds] | None = None) -> CapabilityManifest:
    services = [{"service": s, "plane": "data", "params": {}} for s in sorted(ALL)]
    return CapabilityManifest.model_validate(
        {"plane": "data", "instance": instance, "device": device, "demo": demo, "services": services}
        | {"stepSeconds": [m.model_dump() for m in measured or []]}
    )


def lora_graph(options: dict[str, Any], images: int = 3) -> GraphDocument:
    return GraphDocument.model_validate(
        {
            "schemaVersion": "biplane.graph.v1",
            "jobId": "j1",
            "workflow": "lora",
            "context": {"prompt": "a box", "images": [f"jobs/j1/inputs/images/{i}.png" for i in range(images)]},
            "nodes": [
                {"id": "prepare", "service": "prepare_assets", "plane": "control", "params": {}},
                {"id": "train_lora", "service": "train_lora", "plane": "data", "params": options},
                {"id": "publish", "service": "publish_artifacts", "plane": "control", "params": {}},
            ],
            "edges": [{"from": "prepare", "to": "train_lora"}, {"from": "train_lora", "to": "publish"}],
        }
    )


def test_measured_step_times_replace_the_prior_and_scale_with_pixels() -> None:
    prior = CPU_DEMO.seconds_per_step("train_lora", 64)
    measured = Worker("w", ("cpu", True), ALL, (StepSeconds(service="train_lora", resolution=64, seconds=2.0),))
    assert prior is not None and prior != 2.0
    assert measured.seconds_per_step("train_lora", 64) == 2.0
    larger, smaller = measured.seconds_per_step("train_lora", 128), measured.seconds_per_step("train_lora", 32)
    assert larger is not None and smaller is not None and smaller < 2.0 < larger
    # The nearest measured resolution is the base: a measurement at 128 px answers for 128 px as it is.
    both = Worker(
        "w", ("cpu", True), ALL, (*measured.measured, StepSeconds(service="train_lora", resolution=128, seconds=9.0))
    )
    assert both.seconds_per_step("train_lora", 128) == 9.0
    assert both.seconds_per_step("train_voice") == CPU_DEMO.seconds_per_step("train_voice")  # the prior


def test_node_seconds_grow_with_steps_previews_and_images() -> None:
    base = CPU_DEMO.node_seconds("train_lora", {"steps": 100, "resolution": 64, "sampleEvery": 0})
    assert base is not None
    more_steps = CPU_DEMO.node_seconds("train_lora", {"steps": 200, "resolution": 64, "sampleEvery": 0})
    previews = CPU_DEMO.node_seconds("train_lora", {"steps": 100, "resolution": 64, "sampleEvery": 10})
    images = CPU_DEMO.node_seconds("train_lora", {"steps": 100, "resolution": 64, "sampleEvery": 0}, images=20)
    assert all(x is not None and x > base for x in (more_steps, previews, images))
    no_baseline = {"steps": 100, "resolution": 64, "sampleEvery": 0, "baseline": False}
    assert CPU_DEMO.node_seconds("train_lora", no_baseline, images=20) == base
    assert CPU_DEMO.node_seconds("no_such_service", {}) is None
    assert CPU_DEMO.node_seconds("train_lora", {"steps": -1}) is None  # invalid params: the planner says so


@pytest.mark.parametrize("kind", [k for k, plan in PLANS.items() if plan.budget is not None])
def test_a_budgeted_worker_recommends_jobs_that_fit_its_budget(kind: tuple[str, bool]) -> None:
    worker = Worker("w", kind, ALL)
    budget = PLANS[kind].budget
    assert budget is not None
    rec = worker.recommend()
    assert set(rec) == ALL
    assert rec["train_lora"]["resolution"] == PLANS[kind].lora_resolution
    TrainLoraParams.model_validate(rec["train_lora"])
    TrainVoiceParams.model_validate(rec["train_voice"])
    RenderVideoParams.model_validate(rec["render_video"])
    lora = worker.node_seconds("train_lora", rec["train_lora"])
    assert lora is not None and lora <= budget * 1.2
    voice = worker.node_seconds("train_voice", rec["train_voice"])
    assert voice is not None and voice <= budget * 1.2


def test_cpu_demo_recommends_a_minute_at_64_px_and_a_gpu_the_usual_settings() -> None:
    cpu = CPU_DEMO.recommend()
    assert cpu["train_lora"]["resolution"] == 64
    assert cpu["render_video"]["width"] == cpu["render_video"]["height"] == 64
    seconds = CPU_DEMO.node_seconds("train_lora", cpu["train_lora"])
    assert seconds is not None and 30 <= seconds <= 75
    gpu = GPU_REAL.recommend()
    d = TrainLoraParams()
    assert gpu["train_lora"] == {"steps": d.steps, "resolution": d.resolution, "sampleEvery": d.sample_every}
    assert gpu["render_video"] == {"width": 512, "height": 512, "frames": 16, "steps": 25}
    assert Worker("lora-only", ("cpu", True), frozenset({"train_lora"})).recommend().keys() == {"train_lora"}


def test_a_slower_measurement_lowers_the_recommended_steps() -> None:
    slow = Worker("w", ("cpu", True), ALL, (StepSeconds(service="train_lora", resolution=64, seconds=1.0),))
    assert slow.recommend()["train_lora"]["steps"] < CPU_DEMO.recommend()["train_lora"]["steps"]


def test_the_users_options_go_over_the_recommendation_and_previews_follow_their_steps() -> None:
    rec = CPU_DEMO.recommend()["train_lora"]
    assert merge_options("train_lora", rec, {"seed": 7}) == {**rec, "seed": 7}
    longer = merge_options("train_lora", rec, {"steps": 2000})
    assert longer["steps"] == 2000 and longer["sampleEvery"] == 500 and longer["resolution"] == rec["resolution"]
    assert merge_options("train_lora", rec, {"steps": 2000, "sampleEvery": 7})["sampleEvery"] == 7
    assert merge_options("train_voice", {"steps": 800}, {}) == {"steps": 800}


def test_the_merged_recommendation_is_the_slowest_workers_per_service() -> None:
    merged, cpu, gpu = recommended([GPU_REAL, CPU_DEMO]), CPU_DEMO.recommend(), GPU_REAL.recommend()
    assert merged["train_lora"] == cpu["train_lora"] and merged["render_video"] == cpu["render_video"]
    # A real SpeechT5 on a GPU takes longer than the tiny demo one on a CPU: its recommendation wins.
    assert merged["train_voice"] == gpu["train_voice"]
    assert recommended([GPU_REAL]) == GPU_REAL.recommend()
    assert recommended([]) == {}


def test_estimate_sums_nodes_on_the_slowest_and_fastest_workers() -> None:
    nodes = [("prepare_assets", "control", {}), ("train_lora", "data", {"steps": 100, "resolution": 64})]
    one = estimate(nodes, [CPU_DEMO])
    both = estimate(nodes, [CPU_DEMO, GPU_REAL])
    assert one is not None and both is not None
    assert both.seconds == one.seconds and both.fastest < one.seconds
    assert both.text().startswith("about ") and " to " in both.text() and one.text().count("about") == 1
    assert not one.measured
    assert estimate(nodes, [Worker("voice-only", ("cpu", True), frozenset({"train_voice"}))]) is None


def test_assess_warns_over_the_limit_and_never_for_a_small_job() -> None:
    workers = [manifest("w1", "cpu", True)]
    small, small_warnings = assess(lora_graph(CPU_DEMO.recommend()["train_lora"]), workers, limit=1800)
    assert small is not None and small.seconds < 1800 and small_warnings == []
    big, big_warnings = assess(lora_graph({"steps": 2000, "resolution": 256}), workers, limit=1800)
    assert big is not None and big.seconds > 1800
    assert [w["code"] for w in big_warnings] == ["long_job"]
    assert big.text() in big_warnings[0]["message"]
    none, missing = assess(lora_graph({}), [], limit=1800)
    assert none is None and [w["code"] for w in missing] == ["no_worker"]
    assert "train_lora" in missing[0]["message"]


def test_worker_from_the_capabilities_json_matches_the_manifest() -> None:
    m = manifest("w1", "cpu", True, [StepSeconds(service="train_lora", resolution=64, seconds=0.5)])
    entry = m.model_dump(by_alias=True, exclude={"services"}) | {"services": [s.service for s in m.services]}
    assert Worker.from_json(entry) == Worker.of(m)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7, "about 7 s"), (44, "about 40 s"), (60, "about 1 min"), (95, "about 2 min"), (3000, "about 50 min")],
)
def test_duration_reads_like_a_person_would_say_it(seconds: float, text: str) -> None:
    assert duration(seconds) == text
    assert duration(8000) == "about 2.2 h"

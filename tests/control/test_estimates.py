"""Defaults fit the worker: capabilities carry the alive workers' recommendation, a submission's 202 carries its
estimate and `warnings` (a long job is accepted all the same). Real control, worker (demo models), Redis, S3."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from common.estimate import Worker, estimate
from common.settings import Settings
from tests.support.api import client
from tests.support.media import png
from tests.support.processes import Plane


def capabilities_once(
    api: httpx.Client, ready: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """GET /api/capabilities until ready(answer) (the worker's first heartbeat follows its /ready)."""
    deadline = time.monotonic() + timeout
    while True:
        caps = dict(api.get("/api/capabilities").json())
        if ready(caps):
            return caps
        assert time.monotonic() < deadline, f"capabilities never became ready: {caps}"
        time.sleep(0.2)


def submit_train(api: httpx.Client, options: dict[str, Any]) -> httpx.Response:
    files = [("images", (f"i{i}.png", png((64, 64), (40 * i, 90, 200)), "image/png")) for i in range(2)]
    data = {"prompt": "a photo of sks box", "workflow": "lora", "options": json.dumps(options)}
    return api.post("/api/train", data=data, files=files)


def test_capabilities_carry_the_alive_workers_recommendation(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    api = client(control.url)
    assert api.get("/api/capabilities").json()["recommended"] == {}  # no worker yet: nothing to recommend
    plane_factory("worker", settings)
    caps = capabilities_once(api, lambda c: c["workersAlive"] == 1)
    worker = caps["workers"][0]
    assert worker["device"] == "cpu" and worker["demo"] is True and worker["precision"] == "fp32"
    assert {"train_lora", "train_voice", "render_video"} <= set(worker["services"])
    assert worker["stepSeconds"] == []  # nothing measured yet: the recommendation comes from the CPU/demo prior
    lora = caps["recommended"]["train_lora"]
    assert lora == worker["recommended"]["train_lora"] == Worker.from_json(worker).recommend()["train_lora"]
    assert lora["resolution"] == 64 and 0 < lora["steps"] < 500  # not the static 512 px / 500 steps
    assert caps["recommended"]["render_video"]["width"] == 64
    assert caps["estimateWarnSeconds"] == 1800


def test_a_long_submission_is_accepted_with_a_warning_and_a_small_one_gets_none(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    api = client(control.url)
    plane_factory("worker", settings)
    caps = capabilities_once(api, lambda c: c["workersAlive"] == 1)

    small = submit_train(api, caps["recommended"]["train_lora"])
    assert small.status_code == 202, small.text
    assert small.json()["warnings"] == []
    assert 0 < small.json()["estimateSeconds"] < caps["estimateWarnSeconds"]

    long = submit_train(api, {"steps": 5000, "resolution": 512})
    assert long.status_code == 202, long.text
    body = long.json()
    assert [w["code"] for w in body["warnings"]] == ["long_job"]
    assert "fewer steps or a lower resolution" in body["warnings"][0]["message"]
    assert body["estimateSeconds"] > caps["estimateWarnSeconds"]
    job = api.get(f"/api/jobs/{body['jobId']}").json()  # accepted: the job exists and is on its way
    assert job["status"] in ("queued", "running")
    api.post(f"/api/jobs/{body['jobId']}/cancel")
    api.post(f"/api/jobs/{small.json()['jobId']}/cancel")


def test_the_warning_limit_is_a_setting_and_a_job_nobody_runs_is_flagged(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    strict = plane_factory("control", settings.model_copy(update={"estimate_warn_seconds": 1.0}))
    api = client(strict.url)
    nobody = submit_train(api, {"steps": 3, "resolution": 64})
    assert nobody.status_code == 202 and nobody.json()["estimateSeconds"] is None
    assert [w["code"] for w in nobody.json()["warnings"]] == ["no_worker"]
    plane_factory("worker", settings)
    capabilities_once(api, lambda c: c["workersAlive"] == 1)
    tiny = submit_train(api, {"steps": 3, "resolution": 64})
    assert tiny.status_code == 202
    assert [w["code"] for w in tiny.json()["warnings"]] == ["long_job"]  # every job is long against a 1 s limit


@pytest.mark.ml
def test_a_finished_job_puts_its_measured_step_time_into_the_recommendation(
    settings: Settings, control: Plane, plane_factory: Callable[..., Plane]
) -> None:
    api = client(control.url)
    plane_factory("worker", settings, OMP_NUM_THREADS="1")
    capabilities_once(api, lambda c: c["workersAlive"] == 1)
    options = {"steps": 3, "resolution": 64, "sampleEvery": 0, "sampleSteps": 2, "checkpointEvery": 0}
    job_id = submit_train(api, options).json()["jobId"]
    deadline = time.monotonic() + 180
    while (status := api.get(f"/api/jobs/{job_id}").json()["status"]) not in ("completed", "failed", "canceled"):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.5)
    assert status == "completed"

    caps = capabilities_once(api, lambda c: any(w["stepSeconds"] for w in c["workers"]))
    worker = caps["workers"][0]
    assert [(s["service"], s["resolution"]) for s in worker["stepSeconds"]] == [("train_lora", 64)]
    measured = Worker.from_json(worker)
    assert caps["recommended"]["train_lora"] == measured.recommend()["train_lora"]
    est = estimate([("train_lora", "data", options)], [measured])
    assert est is not None and est.measured

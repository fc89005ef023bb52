"""train_lora as a job through real executors: SIGKILL after a checkpoint resumes there; cancel stops it cleanly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from common.executor import Executor, request_cancel
from common.models.graph_schema import GraphDocument
from common.settings import Settings
from common.storage import Storage
from tests.support.jobs import Harness, checkpoint_steps, eventually, graph
from tests.support.media import put_images
from tests.support.processes import Plane
from worker.tasks import registry as worker_tasks

pytestmark = pytest.mark.ml


def lora_job(storage: Storage, donor: str, params: dict[str, Any], size: int = 32) -> GraphDocument:
    """A data-only graph: one train_lora node; its images (files of the donor job) and prompt in its context."""
    keys = put_images(storage, donor, n=2, size=size)
    params = {"resolution": size, "sampleEvery": 0, "sampleSteps": 1, **params}
    doc = graph([("train", "train_lora", "data", params)], [])
    return doc.model_copy(update={"context": {"images": keys, "prompt": "a photo of sks"}})


@pytest.mark.parametrize("round_", range(int(os.environ.get("KILL_ROUNDS", "2"))))  # `make soak`: 10
async def test_sigkill_after_a_checkpoint_resumes_from_it(
    redis: Redis, ml_settings: Settings, storage: Storage, plane_factory: Callable[..., Plane], round_: int
) -> None:
    env = {"OMP_NUM_THREADS": "1"}
    first = plane_factory("worker", ml_settings, **env)
    h = Harness(redis, ml_settings)
    assert first.proc is not None
    suffix, mine = f"-{first.proc.pid}", []

    async def beat() -> bool:  # the first heartbeat may follow /ready by a moment
        mine[:] = [m for m in await h.bridge.live_manifests(30) if (m.instance or "").endswith(suffix)]
        return bool(mine)

    await eventually(beat)
    manifest = mine[0]
    assert manifest.demo is True and manifest.device == "cpu"
    assert {"train_lora", "train_voice", "render_video"} <= {s.service for s in manifest.services}

    job = await h.submit(
        lora_job(storage, await h.donor(), {"steps": 16, "checkpointEvery": 4, "learningRate": 1e-2, "rank": 4})
    )
    # The checkpoint of step 4 is uploaded before step 4's progress event goes out.
    await h.wait_for(job.job_id, lambda e: e.kind == "progress" and (e.step or 0) >= 5, timeout=120)
    first.kill()
    saved = checkpoint_steps(storage, job.job_id)
    assert saved and 4 <= saved[-1] < 16 and all(s % 4 == 0 for s in saved)
    resumed_at = saved[-1]
    seen = len(await h.events.replay(job.job_id))

    second = plane_factory("worker", ml_settings, **env)
    final = await h.wait_final(job.job_id, timeout=150)
    assert final.status == "completed", final.error
    node = final.graph.nodes[0]
    assert node.attempts == 2
    out = node.output or {}
    assert out["startStep"] == resumed_at and out["steps"] == 16
    later = [e for e in (await h.events.replay(job.job_id))[seen:] if e.kind == "progress" and e.step is not None]
    assert [e.step for e in later] == list(range(resumed_at + 1, 17))
    assert storage.stat(out["lora"]["key"]).size == out["lora"]["size"]
    assert out["probeLoss"]["end"] < out["probeLoss"]["start"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(f"{second.url}/metrics").text)
        for s in family.samples
    }
    lora = (("service", "train_lora"),)
    assert samples[("biplane_train_steps_total", lora)] == 16 - resumed_at
    assert samples[("biplane_train_step_seconds_count", lora)] == 16 - resumed_at
    assert samples[("biplane_node_peak_memory_bytes", lora)] == out["peakMemoryBytes"]
    assert samples[("biplane_gpu_memory_bytes", (("kind", "total"),))] == 0  # a CPU worker
    assert samples[("biplane_gpu_utilization_ratio", ())] == 0


async def test_cancel_stops_training_within_steps_and_leaves_no_lora(
    redis: Redis, ml_settings: Settings, storage: Storage
) -> None:
    executor = Executor("data", ml_settings, redis, worker_tasks, storage)
    serving = asyncio.create_task(executor.run())
    try:
        h = Harness(redis, ml_settings)
        job = await h.submit(lora_job(storage, await h.donor(), {"steps": 400, "checkpointEvery": 2}))
        events = await h.wait_for(job.job_id, lambda e: e.kind == "progress" and (e.step or 0) >= 3, timeout=120)
        asked_at = events[-1].step or 0
        await request_cancel(h.bridge, job.job_id)
        final = await h.wait_final(job.job_id, timeout=30)
    finally:
        executor.stop()
        await serving
    assert final.status == "canceled"
    assert final.graph.nodes[0].status == "canceled"
    steps = [e.step or 0 for e in await h.events.replay(job.job_id) if e.kind == "progress"]
    assert max(steps) < asked_at + 15  # the flag is read every second; a step takes ~0.1 s
    keys = list(storage.list(f"jobs/{job.job_id}/"))
    assert not [k for k in keys if k.endswith(".safetensors") or k.endswith("sample.png")]
    # Cancel kills the task at once; the checkpoints it saved before stay, so a re-run would resume. The kill
    # may land between a checkpoint's upload and its step's progress event: one checkpoint past the last event.
    saved = checkpoint_steps(storage, job.job_id)
    assert saved and asked_at - 2 <= saved[-1] <= max(steps) + 2

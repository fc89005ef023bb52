"""What KEDA reads to size the worker Deployment (infra/k8s/components/keda) counts exactly the jobs that need a
worker, on a real Redis with real worker processes: jobs waiting (the group's lag) plus jobs running (its pending
entries), across a scale-in (SIGTERM: the job handed back still counts) and a lost node (SIGKILL: the orphaned
entry still counts until another worker claims it), and 0 when all are done."""

from __future__ import annotations

import asyncio
import math
import re
import signal
from collections.abc import Callable
from typing import Any

import yaml
from redis.asyncio import Redis

from common.keys import GROUP, Keys
from common.settings import Settings
from tests.infra.tools import INFRA
from tests.support.jobs import Harness, eventually, graph
from tests.support.processes import Plane

SCALED_OBJECTS = INFRA / "k8s" / "components" / "keda" / "scaledobjects.yaml"


def worker_rule() -> dict[str, Any]:
    (worker,) = [d for d in yaml.safe_load_all(SCALED_OBJECTS.read_text()) if d["metadata"]["name"] == "worker"]
    return dict(worker["spec"])


async def trigger_value(redis: Redis, keys: Keys, meta: dict[str, str]) -> int:
    """One redis-streams trigger's metric, read as KEDA's scaler reads it (XINFO GROUPS lag, XPENDING count)."""
    stream = keys.stream(meta["stream"].rsplit(":", 1)[1])  # the manifest names the default prefix's stream
    assert meta["consumerGroup"] == GROUP
    if "lagCount" in meta:
        (group,) = [g for g in await redis.xinfo_groups(stream) if g["name"] in (GROUP, GROUP.encode())]
        return int(group["lag"])
    if "pendingEntriesCount" in meta:
        return int((await redis.xpending(stream, GROUP))["pending"])
    return int(await redis.xlen(stream))


async def desired_workers(redis: Redis, settings: Settings) -> int:
    """The replicas KEDA's HPA asks for: the scaling formula over the triggers, / target, within min..max."""
    spec = worker_rule()
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["metricType"] == "AverageValue" and re.fullmatch(r"\w+( \+ \w+)*", modifiers["formula"])
    keys = Keys(settings.key_prefix)
    values = {t["name"]: await trigger_value(redis, keys, t["metadata"]) for t in spec["triggers"]}
    composite = sum(values[name] for name in modifiers["formula"].split(" + "))
    wanted = math.ceil(composite / float(modifiers["target"]))
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], wanted))


async def test_keda_asks_for_one_worker_per_unfinished_job_across_scale_in_and_node_loss(
    redis: Redis, settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    h = Harness(redis, settings)
    await h.bridge.ensure_groups()  # control creates them at start in a deployment
    assert await desired_workers(redis, settings) == 0

    jobs = [await h.submit(graph([("w", "test.work", "data", {"steps": 30, "step_seconds": 0.1})], [])) for _ in "abc"]
    assert await desired_workers(redis, settings) == 3  # all waiting: KEDA starts three workers from zero

    first = plane_factory("worker", settings)
    running = await h.wait_for(jobs[0].job_id, lambda e: e.kind == "progress", timeout=60)
    assert running
    assert await desired_workers(redis, settings) == 3  # one running (pending), two waiting (lag)

    assert first.proc is not None
    first.proc.send_signal(signal.SIGTERM)  # a scale-in picks this busy worker
    await asyncio.to_thread(first.proc.wait, 20)
    assert await desired_workers(redis, settings) == 3  # the handed-back job waits again: no job lost its worker

    second = plane_factory("worker", settings)

    async def one_running() -> bool:
        return int((await redis.xpending(h.keys.stream("data"), GROUP))["pending"]) == 1

    await eventually(one_running, timeout=20, what="the second worker takes a job")
    assert second.proc is not None
    second.kill()  # its node is lost: no SIGTERM, the entry stays pending under a consumer that is gone
    assert await desired_workers(redis, settings) == 3  # the orphaned job keeps its worker counted

    plane_factory("worker", settings)  # claims the orphaned entry once idle (BIPLANE_CLAIM_IDLE_SECONDS)
    for job in jobs:
        assert (await h.wait_final(job.job_id, timeout=90)).status == "completed"

    async def idle() -> bool:
        return await desired_workers(redis, settings) == 0

    await eventually(idle, timeout=10, what="scale to zero")

"""Long work on CPU with the demo models: cancel latency per phase and size, time to each phase, SIGTERM to exit.

Cancel latency = from the cancel request (the flag in Redis) to the job's `canceled` status event.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from bench.stack import Stack, stack
from common.bridge import Bridge, connect
from common.events import EventLog
from common.executor import request_cancel, submit
from common.jobs import FINAL_STATUSES, JobStore
from common.keys import Keys
from common.models.event_schema import Event
from common.models.graph_schema import GraphDocument
from common.settings import Settings
from common.storage import Storage

RUNS = int(os.environ.get("BENCH_CANCEL_RUNS", "3"))
SIZES = (64, 256, 512)


def _graph(service: str, params: dict[str, Any], context: dict[str, Any]) -> GraphDocument:
    return GraphDocument.model_validate(
        {
            "schemaVersion": "biplane.graph.v1",
            "workflow": "bench",
            "nodes": [{"id": "n", "service": service, "plane": "data", "params": params}],
            "edges": [],
            "context": context,
        }
    )


class Client:
    def __init__(self, st: Stack) -> None:
        self.settings = Settings(**{k[8:].lower(): v for k, v in st.env.items() if k.startswith("BIPLANE_")})
        self.redis = connect(self.settings)
        keys = Keys(self.settings.key_prefix)
        self.events = EventLog(self.redis, keys, self.settings.event_maxlen)
        self.store = JobStore(self.redis, keys, self.events, self.settings.job_ttl_seconds)
        self.bridge = Bridge(self.redis, keys, self.settings)
        self.storage = Storage(self.settings)
        self.storage.ensure_bucket()

    async def submit(self, doc: GraphDocument) -> tuple[str, float]:
        job = await self.store.create(doc)
        await submit(self.bridge, job)
        return job.job_id, time.time()

    async def wait(self, job_id: str, predicate: Callable[[Event], bool], timeout: float = 900) -> Event:
        deadline, seen = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            for e in await self.events.replay(job_id, seen):
                seen = e.seq
                if predicate(e):
                    return e
            await asyncio.sleep(0.05)
        raise TimeoutError(job_id)

    async def cancel_latency(self, doc: GraphDocument, when: Callable[[Event], bool]) -> tuple[float, dict[str, float]]:
        job_id, submitted = await self.submit(doc)
        await self.wait(job_id, when)
        asked = time.time()
        await request_cancel(self.bridge, job_id)
        end = await self.wait(job_id, lambda e: e.kind == "status" and e.status in FINAL_STATUSES, 120)
        firsts: dict[str, float] = {}
        for e in await self.events.replay(job_id):
            if e.phase and e.phase not in firsts:
                firsts[e.phase] = e.ts - submitted
        return end.ts - asked, firsts


def _images(storage: Storage) -> list[str]:
    keys = []
    for i in range(2):
        out = io.BytesIO()
        Image.new("RGB", (64, 64), (40 * i, 120, 200)).save(out, "PNG")
        keys.append(storage.put_bytes(f"bench/images/{i}.png", out.getvalue(), "image/png").key)
    return keys


def _phase(name: str, step: int = 0) -> Callable[[Event], bool]:
    return lambda e: e.kind == "progress" and e.phase == name and (e.step or 0) >= step


def _row(what: str, values: list[float], note: str) -> tuple[str, str, str]:
    figure = f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"
    return what, figure, note


async def _cancels(st: Stack) -> list[tuple[str, str, str]]:
    c = Client(st)
    images = _images(c.storage)
    lora_ctx = {"images": images, "prompt": "a photo of sks"}
    rows: list[tuple[str, str, str]] = []
    phase_times: dict[str, list[float]] = {}
    for size in SIZES:
        cases = {
            "train_lora baseline": (
                _graph("train_lora", {"resolution": size, "cacheLatents": False}, lora_ctx),
                _phase("baseline"),
            ),
            "train_lora training step": (
                _graph("train_lora", {"resolution": size, "cacheLatents": False, "baseline": False}, lora_ctx),
                _phase("training"),
            ),
            "render_video denoising": (
                _graph("render_video", {"width": size, "height": size, "frames": 4, "steps": 100}, {"prompt": "x"}),
                _phase("denoising"),
            ),
        }
        for what, (doc, when) in cases.items():
            took = []
            for _ in range(RUNS):
                latency, firsts = await c.cancel_latency(doc, when)
                took.append(latency)
                for phase, t in firsts.items():
                    phase_times.setdefault(f"{what.split()[0]} {size} px: {phase}", []).append(t)
            rows.append(_row(f"cancel {what} at {size} px", took, "target <= 2 s on this CPU"))
    for what, values in phase_times.items():
        rows.append(
            (f"submit to first `{what.split(': ')[1]}` event, {what.split(':')[0]}", f"{min(values):.2f} s", "")
        )
    await c.redis.aclose()
    return rows


async def _sigterm(st: Stack, size: int) -> tuple[str, str, str]:
    """A worker busy in a training step gets SIGTERM: seconds until it exited (its job handed back)."""
    c = Client(st)
    params = {"resolution": size, "steps": 100000, "checkpointEvery": 50, "cacheLatents": False, "baseline": False}
    job_id, _ = await c.submit(_graph("train_lora", params, {"images": _images(c.storage), "prompt": "x"}))
    await c.wait(job_id, _phase("training", 2 if size <= 64 else 0))
    proc = list(st.procs.values())[-1]
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 60)
    took = time.monotonic() - began
    await request_cancel(c.bridge, job_id)  # the job was handed back: the next worker must not resume it
    await c.redis.aclose()
    note = "target <= 10 s; job handed back" + ("" if size <= 64 else " (a step this long is killed after the grace)")
    return f"SIGTERM to exit, worker busy in a {size} px training step", f"{took:.2f} s", note


def run() -> list[tuple[str, str, str]]:
    with (
        tempfile.TemporaryDirectory(prefix="biplane-bench-models-") as models,
        stack(BIPLANE_DEMO_MODEL_DIR=models, OMP_NUM_THREADS=str(os.cpu_count() or 1)) as st,
    ):
        st.start("worker")
        rows = asyncio.run(_cancels(st))
        for size in (64, 512):
            rows.append(asyncio.run(_sigterm(st, size)))
            st.start("worker")
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

"""The scaffold every training task shares: device and models, resume, the loop, probe loss and the result's
common keys. A task keeps what is its own: its inputs, its trainer, previews and what it uploads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from common.basemodels import BaseModelSpec
from common.childproc import forward
from common.context import TaskContext
from worker.ml import checkpoints, loop, models
from worker.ml.device import Device, peak_memory_bytes, pick, reset_peak_memory
from worker.ml.loop import LoopResult


class Trainer(Protocol):
    def step(self) -> float: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class TrainParams(Protocol):
    @property
    def steps(self) -> int: ...

    @property
    def checkpoint_every(self) -> int: ...


@dataclass
class Trained:
    """Where a run ended: the loop's figures and the probe loss before and after training."""

    start: int
    probe_start: float | None
    probe_end: float | None
    loop: LoopResult


@dataclass
class Training:
    """One training run of a task on its device with its base models (`begin`), then `run` and `result`."""

    ctx: TaskContext
    device: Device
    models: models.ModelPaths

    def run(
        self,
        trainer: Trainer,
        p: TrainParams,
        probe: Callable[[], float | None],
        after_step: Callable[[int], None] | None = None,
    ) -> Trained:
        """Resume from the latest checkpoint (or probe the baseline), train to p.steps, probe again."""
        ctx = self.ctx

        def checkpoint(step: int) -> None:
            ctx.phase("uploading")
            checkpoints.save(ctx, step, {**trainer.state(), "probeStart": probe_start})
            ctx.phase("training")

        start, probe_start = checkpoints.resume(ctx, trainer, probe)
        ctx.phase("training")
        result = loop.run(
            ctx,
            total=p.steps,
            start=start,
            step=trainer.step,
            checkpoint=checkpoint,
            checkpoint_every=p.checkpoint_every,
            after_step=after_step,
        )
        return Trained(start, probe_start, probe(), result)

    def result(self, trained: Trained, p: TrainParams, size: int, **own: Any) -> dict[str, Any]:
        """Report peak memory and the step time (for `size`, e.g. the resolution) and return the task's
        output: its own keys, then those every training task shares."""
        peak = peak_memory_bytes(self.device)
        forward("worker.metrics:peak_memory", self.ctx.service, peak)
        forward("worker.metrics:step_time", self.ctx.service, size, trained.loop.median_step_seconds)
        shared = {
            "steps": p.steps,
            "startStep": trained.start,
            "loss": trained.loop.last_loss,
            "probeLoss": {"start": trained.probe_start, "end": trained.probe_end},
            "stepSeconds": trained.loop.median_step_seconds,
        }
        return {
            **own,
            **shared,
            "device": self.device.name,
            "precision": self.device.precision,
            "demo": self.models.demo,
            "models": self.models.used,  # each model's setting, reference, repo id and commit: what this run used
            "peakMemoryBytes": peak,
        }


def begin(
    ctx: TaskContext, precision: str, *model_settings: str, mode: str = "", base: BaseModelSpec | None = None
) -> Training:
    """Resolve the base models (fetching hub ids into the cache: the `loading-model` phase's fraction), pick the
    device, reset the peak-memory count and log where training runs."""
    paths = models.resolve(
        ctx.settings, *model_settings, base=base, on_progress=lambda done: ctx.phase("loading-model", done)
    )
    device = pick(precision)
    reset_peak_memory()
    what = f"{ctx.service} ({mode})" if mode else ctx.service
    ctx.log(f"{what} on {device.name} in {device.precision}{' (demo model)' if paths.demo else ''}")
    return Training(ctx, device, paths)

"""How long a job takes on the alive workers, and the options each kind of worker recommends.

Pure functions over capability manifests (no torch): the worker publishes its recommendation with them,
control answers long submissions with a warning, and the UI and the CLI show the same figures.

A node's time is its steps times the seconds per step at its resolution plus a fixed overhead (model load,
caching, baseline, previews, upload). Seconds per step are what the worker measured (`stepSeconds` in its
manifest), scaled by pixel count from the nearest measured resolution, or else a prior for its kind of
worker (device kind, demo models or not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from common.models.graph_schema import GraphDocument
from common.models.manifest_schema import CapabilityManifest, StepSeconds
from common.params import CATALOG, RenderVideoParams, TrainLoraParams, TrainVoiceParams

#: A kind of worker: (device kind "cpu" | "cuda", demo models).
Kind = tuple[str, bool]

#: Seconds per step before a worker has measured any. Demo models on CPU: measured with the demo models on a
#: 2-core x86 VM (torch 2.13, one thread, other tests running: an idle machine is a little faster); the GPU and
#: real-model figures are orders of magnitude for SD 1.5 / SpeechT5 / AnimateDiff, not measured here. A worker
#: replaces them with its own measurement after its first job.
PRIORS: dict[Kind, tuple[StepSeconds, ...]] = {
    ("cpu", True): (
        StepSeconds(service="train_lora", resolution=64, seconds=0.4),
        StepSeconds(service="train_lora", resolution=128, seconds=6.1),
        StepSeconds(service="train_lora", resolution=256, seconds=230.0),  # attention over 128x128 latents
        StepSeconds(service="train_voice", resolution=0, seconds=0.025),
        StepSeconds(service="render_video", resolution=64, seconds=0.32),
        StepSeconds(service="render_video", resolution=128, seconds=4.0),
    ),
    ("cuda", True): (
        StepSeconds(service="train_lora", resolution=256, seconds=0.03),
        StepSeconds(service="train_voice", resolution=0, seconds=0.02),
        StepSeconds(service="render_video", resolution=128, seconds=0.01),
    ),
    ("cpu", False): (
        StepSeconds(service="train_lora", resolution=256, seconds=15.0),
        StepSeconds(service="train_voice", resolution=0, seconds=2.0),
        StepSeconds(service="render_video", resolution=256, seconds=3.0),
    ),
    ("cuda", False): (
        StepSeconds(service="train_lora", resolution=512, seconds=0.25),
        StepSeconds(service="train_voice", resolution=0, seconds=0.1),
        StepSeconds(service="render_video", resolution=512, seconds=0.06),
    ),
}
#: Fixed seconds of a data-plane node besides its steps: process start, model load, caching, encoding, upload.
OVERHEAD: dict[Kind, float] = {("cpu", True): 15.0, ("cuda", True): 8.0, ("cpu", False): 120.0, ("cuda", False): 40.0}
#: Step time grows with pixels to this power from the nearest known resolution. Attention is quadratic in latent
#: pixels and dominates the demo UNet: from 64 to 128 px a demo step took 15x longer (LoRA; 38x from 128 to
#: 256) and 12.5x (video), so 2; real models spend more of a step in convolutions (linear), so 1.5.
PIXEL_EXPONENT: dict[bool, float] = {True: 2.0, False: 1.5}
#: Samples a recommended LoRA job renders: three previews and the final one.
SAMPLES = 4
#: A control-plane node (decoding uploads, writing the manifest).
CONTROL_NODE_SECONDS = 2.0
#: A denoising step of a preview (forward passes with guidance, no backward), per training step: measured 0.6
#: (64 px) and 0.52 (128 px) on the demo model.
SAMPLE_STEP_SHARE = 0.55
#: One forward pass of the baseline loss (four per image, measured before and after training), per training step:
#: measured 0.3 on the demo model.
PROBE_PASS_SHARE = 0.3


@dataclass(frozen=True)
class Plan:
    """How a kind of worker sizes jobs: resolutions it can afford, and the seconds a recommended node should
    take (None: the usual settings, the params' own defaults)."""

    lora_resolution: int
    video: Mapping[str, int]
    budget: float | None
    sample_steps: int = 20


PLANS: dict[Kind, Plan] = {
    # The demo SD's VAE downsamples 2x, so 512 px is a 256x256 latent: minutes per step on a CPU.
    ("cpu", True): Plan(64, {"width": 64, "height": 64, "frames": 8, "steps": 10}, budget=60.0, sample_steps=10),
    ("cuda", True): Plan(256, {"width": 128, "height": 128, "frames": 16, "steps": 20}, budget=60.0),
    ("cpu", False): Plan(256, {"width": 256, "height": 256, "frames": 8, "steps": 15}, budget=1200.0),
    ("cuda", False): Plan(512, {}, budget=None),
}


def kind_of(device: str | None, demo: bool) -> Kind:
    """Anything that is not CUDA plans like a CPU."""
    return ("cuda" if device == "cuda" else "cpu", bool(demo))


@dataclass(frozen=True)
class Worker:
    """What an estimate needs of a live worker's manifest."""

    instance: str
    kind: Kind
    services: frozenset[str]
    measured: tuple[StepSeconds, ...] = ()

    @classmethod
    def of(cls, manifest: CapabilityManifest) -> Worker:
        return cls(
            manifest.instance or "",
            kind_of(manifest.device, bool(manifest.demo)),
            frozenset(s.service for s in manifest.services),
            tuple(manifest.step_seconds or ()),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Worker:
        """A worker entry of GET /api/capabilities (camelCase, services as names)."""
        return cls(
            str(data.get("instance") or ""),
            kind_of(data.get("device"), bool(data.get("demo"))),
            frozenset(str(s) for s in data.get("services") or ()),
            tuple(StepSeconds.model_validate(s) for s in data.get("stepSeconds") or ()),
        )

    def seconds_per_step(self, service: str, resolution: int = 0) -> float | None:
        """Measured at the nearest resolution (else the prior), scaled by pixel count."""
        known = [s for s in self.measured if s.service == service] or [
            s for s in PRIORS[self.kind] if s.service == service
        ]
        if not known:
            return None
        if not resolution:
            return known[0].seconds
        nearest = min(known, key=lambda s: abs(math.log(resolution / s.resolution)) if s.resolution else math.inf)
        if not nearest.resolution:
            return nearest.seconds
        return nearest.seconds * ((resolution / nearest.resolution) ** 2) ** PIXEL_EXPONENT[self.kind[1]]

    def node_seconds(self, service: str, params: Mapping[str, Any], images: int = 0) -> float | None:
        """Seconds of one node on this worker; None when its service is not one whose cost is known."""
        p = _params(service, params)
        overhead = OVERHEAD[self.kind]
        if isinstance(p, TrainLoraParams):
            step = self.seconds_per_step(service, p.resolution)
            if step is None:
                return None
            samples = 1 + ((p.steps - 1) // p.sample_every if p.sample_every else 0)
            probes = 8 * images if p.baseline else 0
            extra = SAMPLE_STEP_SHARE * samples * p.sample_steps + PROBE_PASS_SHARE * probes
            return overhead + step * (p.steps + extra)
        if isinstance(p, TrainVoiceParams):
            step = self.seconds_per_step(service)
            return None if step is None else overhead + step * p.steps
        if isinstance(p, RenderVideoParams):
            step = self.seconds_per_step(service, round(math.sqrt(p.width * p.height)))
            return None if step is None else overhead + step * p.steps * p.frames
        return None

    def recommend(self) -> dict[str, dict[str, Any]]:
        """Options per data-plane service this worker offers, sized to its kind and its measured speed."""
        plan = PLANS[self.kind]
        out: dict[str, dict[str, Any]] = {}
        if "train_lora" in self.services:
            out["train_lora"] = self._lora(plan)
        if "train_voice" in self.services:
            out["train_voice"] = self._voice(plan)
        if "render_video" in self.services:
            defaults = RenderVideoParams()
            out["render_video"] = {
                "width": plan.video.get("width", defaults.width),
                "height": plan.video.get("height", defaults.height),
                "frames": plan.video.get("frames", defaults.frames),
                "steps": plan.video.get("steps", defaults.steps),
            }
        return out

    def _lora(self, plan: Plan) -> dict[str, Any]:
        d = TrainLoraParams()
        if plan.budget is None:
            return {"steps": d.steps, "resolution": d.resolution, "sampleEvery": d.sample_every}
        step = self.seconds_per_step("train_lora", plan.lora_resolution) or 1.0
        spare = plan.budget - OVERHEAD[self.kind] - step * SAMPLE_STEP_SHARE * SAMPLES * plan.sample_steps
        steps = _nice(spare / step, low=20, high=d.steps * 4)
        return {
            "steps": steps,
            "resolution": plan.lora_resolution,
            "sampleEvery": _sample_every(steps),
            "sampleSteps": plan.sample_steps,
        }

    def _voice(self, plan: Plan) -> dict[str, Any]:
        d = TrainVoiceParams()
        if plan.budget is None:
            return {"steps": d.steps}
        step = self.seconds_per_step("train_voice") or 1.0
        return {"steps": _nice((plan.budget - OVERHEAD[self.kind]) / step, low=20, high=d.steps * 4)}


def _sample_every(steps: int) -> int:
    return max(1, math.ceil(steps / SAMPLES))


def merge_options(service: str, recommended: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The user's options over a recommendation; a recommended preview cadence follows the steps the user chose."""
    out = {**recommended, **given}
    if service == "train_lora" and "sampleEvery" in recommended and "steps" in given and "sampleEvery" not in given:
        out["sampleEvery"] = _sample_every(int(given["steps"]))
    return out


def _nice(value: float, *, low: int, high: int) -> int:
    """Clamp, then round down to two significant digits (170, not 173)."""
    n = int(min(max(value, low), high))
    digits = max(0, len(str(n)) - 2)
    return max(low, n // 10**digits * 10**digits)


def _params(service: str, params: Mapping[str, Any]) -> BaseModel | None:
    entry = CATALOG.get(service)
    if entry is None:
        return None
    try:
        return entry[1].model_validate(dict(params))
    except ValidationError:
        return None  # the planner rejects these; an estimate does not need to say it too


@dataclass(frozen=True)
class Estimate:
    """Seconds a job takes: on the slowest alive workers that offer its services, and on the fastest."""

    seconds: float
    fastest: float
    measured: bool  #: every data-plane node's step time was measured (not a prior)

    def text(self) -> str:
        """`about 3 min`, or `about 40 s to 25 min` when the alive workers differ much."""
        if round(self.fastest) < round(self.seconds) * 0.8:
            return f"{duration(self.fastest)} to {duration(self.seconds).removeprefix('about ')}"
        return duration(self.seconds)


def duration(seconds: float) -> str:
    """About how long, for people: `about 40 s`, `about 1 min`, `about 1.5 h`."""
    if seconds < 55:
        return f"about {max(1, round(seconds / 10) * 10 if seconds >= 20 else round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def options_text(options: Mapping[str, Any]) -> str:
    """`64 px, 100 steps, a preview every 25 steps, 10 denoising steps per preview`."""
    words = {
        "resolution": "{} px",
        "steps": "{} steps",
        "sampleEvery": "a preview every {} steps",
        "sampleSteps": "{} denoising steps per preview",
    }
    order = sorted(options, key=lambda k: list(words).index(k) if k in words else len(words))
    return ", ".join(words.get(k, k + " {}").format(options[k]) for k in order)


Node = tuple[str, str, Mapping[str, Any]]  #: (service, plane, params)


def estimate(nodes: Iterable[Node], workers: Sequence[Worker], images: int = 0) -> Estimate | None:
    """The job's nodes one after the other (parallel nodes share a worker's cores); None when a data-plane
    node has no alive worker that offers its service, or its cost is not known."""
    slow = fast = 0.0
    measured = True
    for service, plane, params in nodes:
        if plane == "control":
            slow, fast = slow + CONTROL_NODE_SECONDS, fast + CONTROL_NODE_SECONDS
            continue
        offering = [w for w in workers if service in w.services]
        figures = [s for w in offering if (s := w.node_seconds(service, params, images))]
        if not figures:
            return None
        slow, fast = slow + max(figures), fast + min(figures)
        measured = measured and all(any(m.service == service for m in w.measured) for w in offering)
    return Estimate(slow, fast, measured)


def graph_nodes(graph: GraphDocument) -> list[Node]:
    return [(n.service, n.plane, n.params or {}) for n in graph.nodes]


def graph_images(graph: GraphDocument) -> int:
    images = (graph.context or {}).get("images")
    return len(images) if isinstance(images, list) else 0


def recommended(workers: Sequence[Worker]) -> dict[str, dict[str, Any]]:
    """One recommendation per service: that of the slowest alive worker offering it (at the service's
    default options), so a recommended job fits whichever worker takes it."""
    out: dict[str, dict[str, Any]] = {}
    for service in sorted({s for w in workers for s in w.services}):
        offering = [w for w in workers if service in w.services]
        slowest = max(offering, key=lambda w: w.node_seconds(service, {}) or 0.0)
        if service in (rec := slowest.recommend()):
            out[service] = rec[service]
    return out


def assess(
    graph: GraphDocument, manifests: Sequence[CapabilityManifest], limit: float
) -> tuple[Estimate | None, list[dict[str, str]]]:
    """The estimate of a submitted job and the `warnings` of its 202: a job over `limit` seconds, or one that
    no alive worker can run (it waits in the queue). Neither refuses the job."""
    workers = [Worker.of(m) for m in manifests if m.plane == "data"]
    missing = sorted({n.service for n in graph.nodes if n.plane == "data"} - {s for w in workers for s in w.services})
    if missing:
        message = f"no alive worker runs {', '.join(missing)}: the job waits in the queue until one starts"
        return None, [{"code": "no_worker", "message": message}]
    est = estimate(graph_nodes(graph), workers, graph_images(graph))
    if est is None or est.seconds <= limit:
        return est, []
    message = (
        f"this job is estimated to take {est.text()} on the alive workers, more than the "
        f"{duration(limit).removeprefix('about ')} this deployment expects; fewer steps or a lower resolution "
        "make it shorter"
    )
    return est, [{"code": "long_job", "message": message}]

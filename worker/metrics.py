"""Prometheus metrics of the data plane's ML work (low-cardinality labels: service, memory kind)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from worker.ml.device import DeviceInfo

TRAIN_STEPS = Counter("biplane_train_steps", "Optimizer steps taken by training tasks", ["service"])
TRAIN_STEP_SECONDS = Histogram(
    "biplane_train_step_seconds",
    "Wall time of one training step",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GPU_MEMORY = Gauge("biplane_gpu_memory_bytes", "GPU memory of this worker", ["kind"], multiprocess_mode="livemax")
NODE_PEAK_MEMORY = Gauge(
    "biplane_node_peak_memory_bytes",
    "Peak memory of the last node run (CUDA allocated, or process RSS)",
    ["service"],
    multiprocess_mode="mostrecent",
)
GPU_UTILIZATION = Gauge(
    "biplane_gpu_utilization_ratio",
    "GPU utilisation 0..1 (0 on CPU or when unknown)",
    multiprocess_mode="livemax",
)


def observe_device(info: DeviceInfo) -> None:
    """Set the GPU gauges from a device description (all zero on a CPU worker)."""
    GPU_MEMORY.labels("allocated").set(info.allocated_bytes)
    GPU_MEMORY.labels("reserved").set(info.reserved_bytes)
    GPU_MEMORY.labels("total").set(info.vram_bytes or 0)
    GPU_UTILIZATION.set(info.utilization)


# Observations a task reports through common.childproc.forward (tasks run in child processes; metrics live here).


def train_step(service: str, seconds: float) -> None:
    TRAIN_STEPS.labels(service).inc()
    TRAIN_STEP_SECONDS.labels(service).observe(seconds)


def peak_memory(service: str, peak_bytes: int) -> None:
    NODE_PEAK_MEMORY.labels(service).set(peak_bytes)


#: Median seconds per training step by (service, resolution; 0 = not resolution-bound), as measured on this
#: worker (render_video: seconds per denoising step and frame at the square root of width x height): the
#: heartbeat publishes it and recommendations are made from it (common/estimate.py).
STEP_SECONDS_SEEN: dict[tuple[str, int], float] = {}


def step_time(service: str, resolution: int, seconds: float | None) -> None:
    if seconds is not None and seconds > 0:
        STEP_SECONDS_SEEN[(service, int(resolution))] = float(seconds)

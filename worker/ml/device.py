"""Device and precision: CUDA when present (bf16 where supported, else fp16 with a GradScaler), CPU in fp32.

`describe()` answers for the heartbeat without importing torch (nvidia-smi), so an idle worker stays light.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_configured = False

#: Model loading patches torch process-wide (accelerate's init_empty_weights puts new parameters on the meta
#: device), so two nodes loading at once in worker threads can get each other's meta tensors. Loads take turns.
LOADING = threading.Lock()


def setup_torch() -> None:
    """Process-wide torch settings, once: TF32 matmuls, quiet progress bars (they would flood worker logs)."""
    global _configured
    if _configured:
        return
    import diffusers.utils.logging as diffusers_logging
    import torch
    import transformers.utils.logging as transformers_logging

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    _configured = True


@dataclass(frozen=True)
class Device:
    """Where a task runs and in which precision. `dtype` is the compute/weight dtype of frozen parts."""

    device: torch.device
    dtype: torch.dtype

    @property
    def kind(self) -> str:
        return self.device.type

    @property
    def name(self) -> str:
        """`cpu`, or `cuda:0 (NVIDIA H100 80GB HBM3)`."""
        import torch

        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    @property
    def mixed(self) -> bool:
        import torch

        return self.dtype != torch.float32

    @property
    def precision(self) -> str:
        import torch

        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to dtype for mixed precision; a no-op in fp32."""
        import torch

        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only (bf16 has fp32's range); a disabled scaler is a pass-through."""
        import torch

        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)


def pick(precision: str = "auto") -> Device:
    """CUDA if available, else CPU. auto = bf16 on GPUs that support it, fp16 on older ones, fp32 on CPU."""
    setup_torch()
    import torch

    if not torch.cuda.is_available():
        if precision in ("fp16", "bf16"):  # half precision training on CPU is slow and unsupported by some ops
            precision = "fp32"
        return Device(torch.device("cpu"), torch.float32)
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Device(torch.device("cuda", torch.cuda.current_device()), dtype)


def reset_peak_memory() -> None:
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device: Device) -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak RSS (ru_maxrss is KiB on Linux)."""
    import torch

    if device.kind == "cuda":
        return int(torch.cuda.max_memory_allocated(device.device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass(frozen=True)
class DeviceInfo:
    """What the heartbeat manifest and the GPU gauges say about this worker's accelerator."""

    device: str
    gpu_name: str | None = None
    vram_bytes: int | None = None
    allocated_bytes: int = 0
    reserved_bytes: int = 0
    utilization: float = 0.0


def describe() -> DeviceInfo:
    """Device facts; uses torch only when a task already imported it, else asks nvidia-smi (cheap)."""
    if "torch" in sys.modules:
        import torch

        if not torch.cuda.is_available():
            return DeviceInfo("cpu")
        props = torch.cuda.get_device_properties(0)
        try:
            utilization = torch.cuda.utilization(0) / 100.0
        except (ModuleNotFoundError, RuntimeError):  # needs pynvml; the gauge reads 0 when unknown
            utilization = 0.0
        return DeviceInfo(
            "cuda",
            props.name,
            int(props.total_memory),
            int(torch.cuda.memory_allocated(0)),
            int(torch.cuda.memory_reserved(0)),
            utilization,
        )
    return _nvidia_smi() or DeviceInfo("cpu")


@functools.cache
def auto_precision() -> str:
    """What pick("auto") computes in here, without importing torch: fp32 on CPU; on a GPU bf16 from compute
    capability 8.0 (Ampere) on, else fp16."""
    if "torch" in sys.modules:
        import torch

        if not torch.cuda.is_available():
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "fp32"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        major = float(out.splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "fp32"  # no answer: describe() reports no GPU either, and tasks then run on the CPU
    return "bf16" if major >= 8.0 else "fp16"


def _nvidia_smi() -> DeviceInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = "--query-gpu=name,memory.total,memory.used,utilization.gpu"
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # a broken driver reports like no GPU; the worker then trains on CPU
    first = out.strip().splitlines()[0] if out.strip() else ""
    parts = [p.strip() for p in first.split(",")]
    if len(parts) != 4:
        return None
    name, total_mib, used_mib, util = parts
    mib = 1024 * 1024
    return DeviceInfo(
        "cuda",
        name,
        int(float(total_mib) * mib),
        reserved_bytes=int(float(used_mib) * mib),
        utilization=float(util) / 100.0 if util.replace(".", "").isdigit() else 0.0,
    )

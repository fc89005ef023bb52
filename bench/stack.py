"""A throwaway stack for benchmarks: private Redis + S3 + real control/worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.dev.devstack import RedisServer, S3Server, free_port, ready, stack_env, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown CPU",
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} x {cpu}, {mem} GiB RAM, Python {sys.version.split()[0]}"


@dataclass
class Stack:
    env: dict[str, str]
    root: Path = ROOT  #: the checkout whose control and worker run (BENCH_BASELINE: an older one)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def start(self, module: str, **extra: str) -> str:
        port = free_port()
        var = "BIPLANE_CONTROL_PORT" if module == "control" else "BIPLANE_WORKER_PORT"
        env = {**self.env, var: str(port), **extra}
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: ready(url), 120, f"{module} /ready", proc)
        name = module if module not in self.procs else f"{module}{len(self.procs)}"
        self.procs[name], self.urls[name] = proc, url
        return url


@contextmanager
def stack(root: Path = ROOT, **settings: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="biplane-bench-") as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        s3 = S3Server(Path(tmp) / "s3").start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
        env.update(
            {
                **stack_env(redis, s3),
                "BIPLANE_API_KEYS": API_KEY,
                "BIPLANE_RATE_LIMIT_PER_MINUTE": "100000",
                "PYTHONPATH": str(root),
                **settings,
            }
        )
        st = Stack(env, root)
        try:
            yield st
        finally:
            for proc in st.procs.values():
                stop_process(proc, grace=10)
            s3.stop()
            redis.stop()

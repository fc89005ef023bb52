"""Idle RSS of control and worker, and `make run` start-to-ready time."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.stack import ROOT, rss_bytes, stack
from infra.dev.devstack import free_port, ready

MB = 1024 * 1024


def tree_rss(pid: int) -> int:
    """RSS of a process and its children (uvicorn runs in the process itself)."""
    total = rss_bytes(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += tree_rss(int(child))
    return total


def make_run_seconds() -> float:
    ports = {
        k: str(free_port()) for k in ("CONTROL_PORT", "WORKER_PORT", "FRONTEND_PORT", "DEV_REDIS_PORT", "DEV_S3_PORT")
    }
    with tempfile.TemporaryDirectory(prefix="biplane-makerun-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
        env.update({f"BIPLANE_{k}": v for k, v in ports.items()})
        env["BIPLANE_DEV_DIR"] = tmp
        started = time.monotonic()
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            urls = [f"http://127.0.0.1:{ports['CONTROL_PORT']}", f"http://127.0.0.1:{ports['WORKER_PORT']}"]
            while not all(ready(u) for u in urls):
                if proc.poll() is not None or time.monotonic() - started > 300:
                    raise RuntimeError("make run did not come up")
                time.sleep(0.1)
            return time.monotonic() - started
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)


def run() -> list[tuple[str, str, str]]:
    rows = []
    with stack() as st:
        st.start("control")
        st.start("worker")
        time.sleep(3)  # let start-up allocations settle before reading idle RSS
        for name in ("control", "worker"):
            rows.append(
                (f"idle RSS, {name}", f"{tree_rss(st.procs[name].pid) / MB:.0f} MB", "ML libraries load lazily")
            )
    rows.append(("`make run` start to both /ready", f"{make_run_seconds():.1f} s", "venv already installed"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

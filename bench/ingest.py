"""`/api/train` ingest of 20 x 2 MB images: wall time and control RSS growth (target < 50 MB)."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
from PIL import Image

from bench.stack import API_KEY, rss_bytes, stack

MB = 1024 * 1024


def noise_png(seed: int, target: int = 2 * MB) -> bytes:
    """An incompressible PNG of about target bytes."""
    side = int((target / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def run(count: int = 20, rounds: int = 3) -> list[tuple[str, str, str]]:
    images = [noise_png(i) for i in range(count)]
    total = sum(len(i) for i in images)
    rows = []
    with stack() as st:
        url = st.start("control")
        pid = st.procs["control"].pid
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
        api.get("/api/capabilities")
        before = rss_bytes(pid)
        peak, times = [before], []
        done = threading.Event()

        def sample() -> None:  # RSS during the requests, not only between them
            while not done.wait(0.005):
                peak[0] = max(peak[0], rss_bytes(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for r in range(rounds):
            files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
            started = time.perf_counter()
            resp = api.post("/api/train", data={"prompt": f"bench {r}", "options": '{"steps": 1}'}, files=files)
            times.append(time.perf_counter() - started)
            resp.raise_for_status()
        done.set()
        sampler.join()
        growth = (peak[0] - before) / MB
        rows.append(
            (
                "ingest 20 x 2 MB (/api/train)",
                f"{min(times):.2f} s best of {rounds} ({total / MB:.0f} MB)",
                f"{total / MB / min(times):.0f} MB/s",
            )
        )
        rows.append(
            (
                "control RSS growth during ingest",
                f"{growth:.1f} MB (idle {before / MB:.0f} MB)",
                "target < 50 MB: " + ("met" if growth < 50 else "MISSED"),
            )
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

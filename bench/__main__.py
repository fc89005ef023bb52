"""Runs every benchmark, prints one table and writes it to docs/performance.md."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.stack import machine

#: Benchmark modules, each with run() -> list of (what, figure, target/notes) rows.
BENCHES = ["bench.noop", "bench.ws_latency", "bench.ingest", "bench.footprint", "bench.lora_step"]


def main(names: list[str]) -> None:
    rows: list[tuple[str, str, str]] = []
    for name in names or BENCHES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            rows.append((name, "not available", repr(e)))
            continue
        started = time.perf_counter()
        rows.extend(module.run())
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    table = ["| benchmark | figure | target / note |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(table)
    print(text)
    doc = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
    analysis = Path(__file__).resolve().parent / "analysis.md"
    doc.write_text(
        "# Performance\n\nWritten by `make bench` (`python -m bench`); figures, never assertions.\n\n"
        f"Machine: {machine()}. Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n{text}\n\n"
        + analysis.read_text()
    )


if __name__ == "__main__":
    main(sys.argv[1:])

"""Runs every benchmark, prints one table and writes it to docs/performance.md."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.stack import machine

#: Benchmark modules, each with run() -> list of (what, figure, target/notes) rows.
BENCHES = [
    "bench.noop",
    "bench.ws_latency",
    "bench.ingest",
    "bench.footprint",
    "bench.lora_step",
    "bench.gpu",
    "bench.cancel",
]


def main(names: list[str]) -> None:
    rows: list[tuple[str, str, str]] = []
    for name in names or BENCHES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            rows.append((name, "not available", repr(e)))
            continue
        started = time.perf_counter()
        try:
            module_rows = module.run()
        except Exception as e:  # one broken benchmark must not lose the others' figures
            module_rows = [(name, "failed", repr(e)[:200])]
        rows.extend(module_rows)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for row in module_rows:
            print(" | ".join(row), file=sys.stderr, flush=True)
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

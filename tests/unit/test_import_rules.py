"""The import direction holds by lint: ruff's banned-api rule fails a forbidden import in each package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ruff(path: str, source: str) -> subprocess.CompletedProcess[str]:
    """Lints `source` as if it were the file `path` in the repository (nothing is written to the tree)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("control/probe.py", "worker.ml.models"),
        ("control/routes/probe.py", "torch"),
        ("control/tasks/probe.py", "diffusers"),
        ("control/probe.py", "transformers"),
        ("control/probe.py", "peft"),
        ("worker/tasks/probe.py", "control.app"),
        ("common/probe.py", "worker"),
        ("common/probe.py", "control"),
        ("frontend/probe.py", "torch"),
        ("frontend/pages/probe.py", "control.errors"),
    ],
)
def test_forbidden_import_fails_lint(path: str, module: str) -> None:
    result = _ruff(path, f"import {module}\n\nprint({module})\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID251" in result.stdout


@pytest.mark.parametrize(
    ("path", "module"),
    [("control/probe.py", "common.jobs"), ("worker/probe.py", "torch"), ("worker/probe.py", "common.jobs")],
)
def test_allowed_import_passes_lint(path: str, module: str) -> None:
    result = _ruff(path, f"import {module}\n\nprint({module})\n")
    assert result.returncode == 0, result.stdout + result.stderr

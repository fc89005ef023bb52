"""The import direction holds by lint: ruff's banned-api rule fails a forbidden import in each package."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
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
        ("frontend/pages/probe.py", "common.params"),
        ("frontend/probe.py", "common.estimate"),
    ],
)
def test_forbidden_import_fails_lint(path: str, module: str) -> None:
    result = _ruff(path, f"import {module}\n\nprint({module})\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID251" in result.stdout


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("control/probe.py", "common.jobs"),
        ("worker/probe.py", "torch"),
        ("worker/probe.py", "common.jobs"),
        ("frontend/probe.py", "client.api"),
        ("frontend/probe.py", "common.models.job_schema"),
        ("frontend/probe.py", "common.settings"),
    ],
)
def test_allowed_import_passes_lint(path: str, module: str) -> None:
    result = _ruff(path, f"import {module}\n\nprint({module})\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ui_bans_every_common_module_but_the_wire_models_settings_and_logs() -> None:
    """A module added to common/ is banned for the UI until someone decides otherwise (frontend/ruff.toml).
    common.config is the settings' loading: the UI process validates its configuration like the planes."""
    allowed = {"models", "settings", "config", "logs", "__init__"}
    modules = {p.stem for p in (ROOT / "common").glob("*.py")} | {
        p.parent.name for p in (ROOT / "common").glob("*/__init__.py")
    }
    banned = tomllib.loads((ROOT / "frontend" / "ruff.toml").read_text())["lint"]["flake8-tidy-imports"]["banned-api"]
    assert {f"common.{m}" for m in modules - allowed} <= set(banned)
    assert not {f"common.{m}" for m in allowed} & set(banned)


def test_common_holds_only_what_a_plane_imports() -> None:
    """Every module of common/ is imported by control/ or worker/ (else it belongs to the client or the UI)."""
    planes = "\n".join(p.read_text() for folder in ("control", "worker") for p in (ROOT / folder).rglob("*.py"))
    modules = {p.stem for p in (ROOT / "common").glob("*.py")} - {"__init__"}
    unused = {m for m in modules if not re.search(rf"\bcommon(\.| import .*\b){m}\b", planes)}
    # modules a plane reaches only through another common module
    reached = {m for m in unused if re.search(rf"\bcommon(\.| import .*\b){m}\b", _common_sources(exclude=m))}
    assert unused - reached == set()


def _common_sources(exclude: str) -> str:
    return "\n".join(p.read_text() for p in (ROOT / "common").glob("*.py") if p.stem != exclude)

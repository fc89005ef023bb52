"""The Dev Container configurations (.devcontainer/<part>/devcontainer.json) against the repository they set up.

NOT the official Dev Container JSON Schema: no package on the registries this project installs from ships it
(checked: @devcontainers/cli bundles none, check-jsonschema and schemastore do not carry it); see the report of
issue 16. What is checked here is what a broken config would get wrong: the part's extras and test paths exist,
its ports are the ones the part listens on, the CUDA variant asks for a GPU."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from common.settings import Settings
from tests.infra.tools import ROOT

PARTS = {
    "control": {Settings().control_port},
    "worker-cpu": {Settings().worker_port, Settings().llm_port},
    "worker-cuda": {Settings().worker_port, Settings().llm_port},
    "frontend": {Settings().frontend_port, Settings().control_port},
}


def config(part: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / ".devcontainer" / part / "devcontainer.json").read_text()))


def test_every_part_has_a_config() -> None:
    assert sorted(p.name for p in (ROOT / ".devcontainer").iterdir() if p.is_dir()) == sorted(PARTS)


@pytest.mark.parametrize("part", sorted(PARTS))
def test_config_installs_and_tests_its_part(part: str) -> None:
    c = config(part)
    assert c["name"].startswith("Biplane") and ("image" in c or "build" in c)
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    wanted = set(c["containerEnv"]["EXTRAS"].split(","))
    assert wanted <= extras and "dev" in wanted, wanted - extras
    assert "make install" in c["postCreateCommand"] and "infra/dev/system-deps.sh" in c["postCreateCommand"]
    assert re.search(r"^EXTRAS \?=", (ROOT / "Makefile").read_text(), re.M), "make install reads EXTRAS"
    tests = c["customizations"]["vscode"]["settings"]["python.testing.pytestArgs"]
    assert tests and all((ROOT / t).is_dir() for t in tests), tests
    assert " ".join(tests) in c["postAttachCommand"]
    assert set(c["forwardPorts"]) == PARTS[part]


def test_cuda_variant_asks_for_a_gpu_and_cpu_does_not() -> None:
    cuda, cpu = config("worker-cuda"), config("worker-cpu")
    assert cuda["hostRequirements"]["gpu"] is True and cuda["runArgs"] == ["--gpus", "all"]
    assert cuda["image"].startswith("nvidia/cuda:") and "python:1" in next(iter(cuda["features"]))
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile.worker").read_text()
    assert cuda["image"] in dockerfile, "the same CUDA base as the worker image"
    assert "hostRequirements" not in cpu and "runArgs" not in cpu


def test_configs_are_plain_json() -> None:
    for part in PARTS:
        text = (ROOT / ".devcontainer" / part / "devcontainer.json").read_text()
        assert "//" not in text.replace("://", ""), "no JSONC comments: every JSON tool reads them"

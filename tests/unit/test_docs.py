"""The docs only name endpoints and CLI commands that exist (each one is exercised elsewhere in tests)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from client.cli import app as cli_app
from common.settings import Settings
from control.app import create_app

DOCS = Path(__file__).resolve().parents[2] / "docs"
ENDPOINT = re.compile(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`?\s]*)")
COMMAND = re.compile(r"^biplane ([a-z-]+)", re.MULTILINE)
USAGE = re.compile(r"^biplane ([a-z-]+)((?:[^\n]*\\\n)*[^\n]*)", re.MULTILINE)  # with `\` continuations


def test_every_documented_endpoint_is_routed() -> None:
    app = create_app(Settings())
    routes = {(m.upper(), _shape(path)) for path, ops in app.openapi()["paths"].items() for m in ops}
    routes |= {("GET", "/metrics"), ("GET", "/openapi.json")}  # served, kept out of the OpenAPI document
    documented = {(m, _shape(p)) for doc in DOCS.glob("*.md") for m, p in ENDPOINT.findall(doc.read_text())}
    assert len(documented) >= 15
    missing = sorted(f"{m} {p}" for m, p in documented if (m, p) not in routes)
    assert not missing, f"documented but not routed: {missing}"


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_documented_cli_command_exists() -> None:
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in cli_app.registered_commands}
    commands |= {g.name for g in cli_app.registered_groups if g.name}  # `biplane config ...`, `biplane models ...`
    documented = {c for doc in DOCS.glob("*.md") for c in COMMAND.findall(doc.read_text())}
    assert {"train", "follow", "artifacts"} <= documented
    assert documented <= commands, f"documented but missing: {sorted(documented - commands)}"


def test_every_documented_cli_flag_exists() -> None:
    group = typer.main.get_group(cli_app)
    usages = [
        (c, re.findall(r"(--[a-z-]+)", rest)) for doc in DOCS.glob("*.md") for c, rest in USAGE.findall(doc.read_text())
    ]
    assert any(flags for _, flags in usages)
    for name, flags in usages:
        known = {o for p in group.commands[name].params for o in p.opts} | {"--help"}
        assert set(flags) <= known, f"biplane {name}: documented but unknown {sorted(set(flags) - known)}"


def test_docs_stand_alone() -> None:
    """Every link in the docs points inside the repository, and each relative link names a file that exists."""
    root = DOCS.parent
    for doc in [root / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            assert not re.match(r"^[a-z]+:", target), f"{doc.name} links outside the repository: {target}"
            path = target.split("#", 1)[0]
            assert not path or (doc.parent / path).exists(), f"{doc.name} links to a missing file: {target}"

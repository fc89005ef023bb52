"""What every `biplane` command shares: the output consoles, the global options, errors and --json output."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


class Ctx:
    """The global options (`biplane --url ... --api-key ... --json <command>`)."""

    url: str = "http://127.0.0.1:8000"
    api_key: str = ""
    json: bool = False


ctx = Ctx()


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def emit(data: Any, human: Any = None) -> None:
    if ctx.json or human is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        out.print(human)

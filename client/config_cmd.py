"""`biplane config check [FILE]` and `biplane config show [FILE]`: the settings both planes would start with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from common.config import load, redacted
from common.settings import ConfigError

app = typer.Typer(help="Check or show the configuration (BIPLANE_CONFIG file merged with BIPLANE_* variables).")

FileArg = Annotated[
    Path | None, typer.Argument(help="A JSON, TOML or YAML settings file (default: BIPLANE_CONFIG)", show_default=False)
]


@app.command()
def check(file: FileArg = None) -> None:
    """Validate the file merged with the environment, without starting anything; exit 2 when it is bad."""
    try:
        settings = load(file)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    source = settings.config or "no file (environment and defaults)"
    typer.echo(f"ok: {source}: {len(settings.model_fields_set)} settings set, the rest default")


@app.command()
def show(file: FileArg = None) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    try:
        settings = load(file)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(redacted(settings), indent=2))

"""`biplane models list` and `biplane models pull`: the models this machine's settings name."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from client.console import ctx, emit, err, fail, out

app = typer.Typer(
    help="The models this machine's settings name (BIPLANE_*_MODEL, BIPLANE_BASE_MODELS): where each resolves, "
    "fetch hub ids into the cache (BIPLANE_MODEL_CACHE). Run it where the worker runs; it needs biplane[worker].",
    no_args_is_help=True,
)


def _local_settings() -> Any:
    from pydantic import ValidationError

    from common.settings import Settings

    try:
        return Settings()
    except ValidationError as e:
        fail(f"bad settings: {e.errors()[0]['msg']}")


@app.command("list")
def models_list() -> None:
    """Each configured model: its setting, reference, where it resolves, its size, whether it is cached."""
    from common import modelrefs

    settings = _local_settings()
    rows = [modelrefs.status(settings, s, raw, size=True) for s, raw in modelrefs.configured(settings)]
    table = Table("setting", "reference", "cached", "revision", "size", "path")
    for r in rows:
        size = f"{r['bytes'] / 2**20:,.1f} MiB" if r["bytes"] is not None else "-"
        cached = "yes" if r["cached"] else "[yellow]no[/yellow]"
        table.add_row(
            r["setting"], escape(r["reference"]), cached, r["revision"] or "-", size, escape(r["path"] or "-")
        )
    emit(rows, table)
    if not ctx.json:
        out.print(f"model cache: {modelrefs.cache_dir(settings)}{' (offline)' if modelrefs.offline(settings) else ''}")


@app.command("pull")
def models_pull() -> None:
    """Fetch every configured hub id into the model cache (HF_TOKEN for private or gated models)."""
    from common import modelrefs

    settings = _local_settings()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
    with Progress(*columns, console=err) as bars:

        def on_model(setting: str, raw: str) -> Any:
            task = bars.add_task(f"{setting} {escape(raw)}", total=1.0)
            return lambda done: bars.update(task, completed=done)

        try:
            done = modelrefs.pull(settings, on_model)
        except modelrefs.ModelMissing as e:
            fail(e.message, 1)
    emit(
        [r.describe() | {"path": str(r.path)} for r in done],
        f"{len(done)} configured model(s) ready in {modelrefs.cache_dir(settings)} (unset ones use demo models)",
    )

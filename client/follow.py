"""`biplane ... --follow` and `biplane follow`: a job's live progress over the WebSocket, a bar per node."""

from __future__ import annotations

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from client import views
from client.api import AsyncClient
from client.console import EXIT, ctx, err, run
from common.models.event_schema import Event
from common.models.job_schema import JobRecord


def follow_and_render(job_id: str) -> int:
    """Follow over the WebSocket, draw a bar per node, return the exit code of the final status."""

    async def watch() -> str:
        snapshot: list[JobRecord] = []
        final = "failed"
        with Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=err,
            disable=ctx.json,
        ) as bars:
            tasks: dict[str, TaskID] = {}
            async with AsyncClient(ctx.url, ctx.api_key) as c:
                async for ev in c.follow(job_id, snapshot=snapshot):
                    if snapshot and not tasks:
                        for n in snapshot[0].graph.nodes:
                            tasks[n.id] = bars.add_task(n.id, total=1.0, info=n.status or "")
                    _show(ev, bars, tasks)
                    if ctx.json:
                        print(ev.model_dump_json(by_alias=True, exclude_none=True), flush=True)
                    if ev.kind == "status" and ev.status in EXIT:
                        final = ev.status
                job = await c.job(job_id)
        if job.error:
            err.print(f"[red]{escape(job.error)}[/red]")
        err.print(f"job {job_id}: [bold]{final}[/bold]")
        return final

    return EXIT[run(watch())]


def _show(ev: Event, bars: Progress, tasks: dict[str, TaskID]) -> None:
    task = tasks.get(ev.node_id or "")
    if task is None:
        return
    if ev.kind == "node":
        bars.update(task, info=ev.status, completed=1.0 if ev.status == "completed" else None)
    elif ev.kind == "progress":
        bars.update(task, completed=ev.node_progress, info=views.progress_info(ev))

"""Job page: the graph's nodes with live status and progress, loss chart, previews, log, artifacts, cancel.

A follower task folds the job's events (AsyncClient.follow: WebSocket with reconnect and replay by seq) into a
JobView; a timer renders what changed a few times a second, so a burst of events costs one redraw.
"""

from __future__ import annotations

import asyncio

import httpx
import structlog
from nicegui import background_tasks, ui

from client.api import RemoteError, artifact_path
from client.format import duration, human_bytes, percent
from common.models.artifact_schema import ArtifactMeta
from frontend.files import file_url
from frontend.format import status_color
from frontend.jobstate import JobView, NodeView, media_kind
from frontend.link import ControlLink

log = structlog.get_logger(__name__)

RENDER_SECONDS = 0.25
RETRY_SECONDS = 1.0


def _progress_text(node: NodeView) -> str:
    parts = []
    if node.status == "running" and node.phase:
        pct = f" {node.phase_progress:.0%}" if node.phase_progress is not None else ""
        parts.append(f"{node.phase}{pct}")
    if node.step is not None and node.total_steps:
        parts.append(f"step {node.step}/{node.total_steps}")
    if node.losses:
        parts.append(f"loss {node.losses[-1][1]:.4g}")
    if node.status == "running" and node.eta_seconds is not None:
        parts.append(f"ETA {duration(node.eta_seconds)}")
    if node.error:
        parts.append(node.error)
    return " · ".join(parts)


class NodeRow:
    def __init__(self, node: NodeView) -> None:
        with ui.card().classes("w-full q-pa-sm gap-1").props(f"flat bordered data-testid=node-{node.id}"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label(node.id).classes("text-weight-medium")
                ui.label(node.service).classes("text-caption text-grey-7")
                color = "blue-grey-6" if node.plane == "control" else "deep-purple-6"
                ui.badge(f"{node.plane} plane", color=color).props("outline data-testid=node-plane")
                self.pill = ui.badge().props("data-testid=node-status")
                self.bar = (
                    ui.linear_progress(show_value=False, size="10px")
                    .classes("col-grow")
                    .style("min-width: 8rem")
                    .props(f'data-testid=node-progress aria-label="{node.id} progress"')
                )
                self.pct = ui.label().classes("text-caption").style("min-width: 3rem")
            self.detail = ui.label().classes("text-caption text-grey-8").props("data-testid=node-detail")
        self.update(node)

    def update(self, node: NodeView) -> None:
        self.pill.set_text(node.status)
        self.pill.props(f"color={status_color(node.status)}")
        self.bar.set_value(node.progress)
        self.pct.set_text(percent(node.progress))
        self.detail.set_text(_progress_text(node))


class JobPage:
    def __init__(self, link: ControlLink, view: JobView) -> None:
        self.link, self.view = link, view
        self.dirty = True
        self.previews_shown = self.logs_shown = self.loss_points = 0
        self.preview_keys: set[str] = set()
        self._artifacts_busy = False
        self.build()
        self.follower = background_tasks.create(self.follow(), name=f"follow {view.job_id}")
        ui.context.client.on_delete(self.follower.cancel)
        ui.timer(RENDER_SECONDS, self.render)

    # --- layout ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        v = self.view
        with ui.column().classes("w-full max-w-5xl mx-auto q-pa-md gap-4"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label(f"Job {v.job_id}").classes("text-h5").style("word-break: break-all")
                ui.badge(v.workflow, color="grey-8").props("outline data-testid=job-workflow")
                self.pill = ui.badge().props("data-testid=job-status")
                ui.space()
                self.cancel_button = ui.button("Cancel", icon="stop", color="negative", on_click=self.cancel).props(
                    "outline data-testid=cancel"
                )
            with ui.column().classes("w-full gap-1"):
                with ui.row().classes("w-full items-center gap-2"):
                    ui.label("Overall").classes("text-weight-medium")
                    self.overall_pct = ui.label().props("data-testid=overall-percent")
                    self.overall_eta = ui.label().classes("text-caption text-grey-7").props("data-testid=overall-eta")
                self.overall = (
                    ui.linear_progress(show_value=False, size="14px")
                    .classes("w-full")
                    .props('data-testid=overall-progress aria-label="Overall progress"')
                )
                self.error = ui.label().classes("text-negative").props("data-testid=job-error role=alert")
            ui.label("Nodes").classes("text-h6")
            self.rows = {node_id: NodeRow(node) for node_id, node in v.nodes.items()}
            ui.label("Loss").classes("text-h6")
            self.chart = (
                ui.echart(
                    {
                        "animation": False,
                        "tooltip": {"trigger": "axis"},
                        "legend": {"top": 0},
                        "grid": {"left": 48, "right": 16, "top": 32, "bottom": 32},
                        "xAxis": {"type": "value", "name": "step", "minInterval": 1},
                        "yAxis": {"type": "value", "name": "loss", "scale": True},
                        "series": [],
                    }
                )
                .classes("w-full")
                .style("height: 260px")
                .props("data-testid=loss-chart")
            )
            ui.label("Previews").classes("text-h6")
            self.no_previews = ui.label("No previews yet.").classes("text-grey-7")
            self.previews = ui.row().classes("w-full gap-2").props("data-testid=previews")
            ui.label("Results").classes("text-h6")
            self.artifacts = ui.column().classes("w-full gap-2").props("data-testid=artifacts")
            ui.label("Log").classes("text-h6")
            self.log = ui.log(max_lines=500).classes("w-full").style("height: 220px").props("data-testid=log")
            self.dialog = ui.dialog()

    # --- live data ----------------------------------------------------------------------------------------------
    async def follow(self) -> None:
        """Fold events until the job is final; a follow that gives up (control away too long) starts over."""
        while True:
            try:
                async for event in self.link.client.follow(self.view.job_id, since=self.view.seq):
                    self.view.apply(event)
                    self.dirty = True
                return
            except RemoteError as e:
                if e.status == 404:
                    self.view.error = "this job no longer exists"
                    self.dirty = True
                    return
                log.info("job follow interrupted; starting over", job_id=self.view.job_id, error=str(e))
            await asyncio.sleep(RETRY_SECONDS)

    def render(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        v = self.view
        self.pill.set_text(v.status)
        self.pill.props(f"color={status_color(v.status)}")
        self.overall.set_value(v.progress)
        self.overall_pct.set_text(percent(v.progress))
        etas = [n.eta_seconds for n in v.nodes.values() if n.status == "running" and n.eta_seconds is not None]
        self.overall_eta.set_text(f"ETA {duration(max(etas))}" if etas and not v.final else "")
        self.error.set_text(v.error or "")
        self.cancel_button.set_visibility(not v.final)
        for node_id, row in self.rows.items():
            row.update(v.nodes[node_id])
        self._render_chart()
        self._render_previews()
        for line in v.new_logs(self.logs_shown):
            self.log.push(line)
        self.logs_shown = v.logs_total
        if v.artifacts_changed and not self._artifacts_busy:
            v.artifacts_changed = False
            self._artifacts_busy = True
            background_tasks.create(self.load_artifacts(), name=f"artifacts {v.job_id}")

    def _render_chart(self) -> None:
        points = sum(len(n.losses) for n in self.view.nodes.values())
        if points == self.loss_points:
            return
        self.loss_points = points
        self.chart.options["series"] = [
            {"name": n.id, "type": "line", "showSymbol": len(n.losses) < 50, "data": [list(p) for p in n.losses]}
            for n in self.view.nodes.values()
            if n.losses
        ]
        self.chart.update()

    def _render_previews(self) -> None:
        new = self.view.previews[self.previews_shown :]
        self.previews_shown = len(self.view.previews)
        self.no_previews.set_visibility(not self.view.previews)
        for artifact in new:
            path = artifact_path(self.view.job_id, artifact)
            self.preview_keys.add(artifact.key)
            with self.previews:
                self._thumbnail(path, f"preview {path}", testid="preview")

    def _thumbnail(self, path: str, alt: str, testid: str) -> None:
        src = file_url(self.view.job_id, path)
        img = ui.element("img").props(f'src="{src}" alt="{alt}" data-testid={testid}')
        img.classes("rounded-borders cursor-pointer").style(
            "width: min(160px, 40vw); height: min(160px, 40vw); object-fit: cover"
        ).on("click", lambda: self.show_image(src, alt))

    def show_image(self, src: str, alt: str) -> None:
        self.dialog.clear()
        with self.dialog, ui.card().classes("q-pa-sm"):
            ui.element("img").props(f'src="{src}" alt="{alt}" data-testid=viewer-image').style(
                "max-width: 90vw; max-height: 80vh"
            )
            ui.button("Close", on_click=self.dialog.close).props("flat")
        self.dialog.open()

    async def load_artifacts(self) -> None:
        try:
            items = await self.link.client.artifacts(self.view.job_id)
        except (RemoteError, httpx.HTTPError) as e:
            log.info("artifact list unavailable", job_id=self.view.job_id, error=repr(e))
            self.view.artifacts_changed = True  # try again on a later render
            await asyncio.sleep(RETRY_SECONDS)
            return
        finally:
            self._artifacts_busy = False
        self.show_artifacts(items)

    def show_artifacts(self, items: list[ArtifactMeta]) -> None:
        self.artifacts.clear()
        with self.artifacts:
            if not items:
                ui.label("No results yet.").classes("text-grey-7")
            for a in sorted(items, key=self._rank):
                self._artifact_row(a)

    def _rank(self, a: ArtifactMeta) -> tuple[int, str]:
        """Results first, then the manifest, the prepared inputs and the previews."""
        path = artifact_path(self.view.job_id, a)
        order = 3 if a.key in self.preview_keys else 2 if path.startswith("prepare/") else 1 if "/" not in path else 0
        return order, path

    def _artifact_row(self, a: ArtifactMeta) -> None:
        path = artifact_path(self.view.job_id, a)
        kind = media_kind(a.content_type)
        with ui.card().classes("w-full q-pa-sm").props("flat bordered data-testid=artifact"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label(path).classes("text-weight-medium").style("word-break: break-all").props(
                    "data-testid=artifact-name"
                )
                ui.label(a.content_type).classes("text-caption text-grey-7")
                ui.label(human_bytes(a.size)).classes("text-caption").props("data-testid=artifact-size")
                ui.space()
                ui.link("Download", file_url(self.view.job_id, path, download=True)).props(
                    f'download="{path.rsplit("/", 1)[-1]}" data-testid=download'
                )
            ui.label(f"sha256 {a.sha256}").classes("text-caption text-grey-8").style(
                "font-family: monospace; word-break: break-all"
            ).props("data-testid=artifact-sha256")
            if a.key in self.preview_keys:
                return  # already in the previews gallery
            src = file_url(self.view.job_id, path)
            if kind == "image":
                self._thumbnail(path, path, testid="result-image")
            elif kind == "audio":
                ui.audio(src).classes("w-full").props("data-testid=result-audio")
            elif kind == "video":
                ui.video(src).classes("w-full").style("max-height: 60vh").props("data-testid=result-video")

    async def cancel(self) -> None:
        try:
            await self.link.client.cancel(self.view.job_id)
        except RemoteError as e:
            ui.notify(f"Cannot cancel: {e.message}", type="warning")
            return
        except httpx.HTTPError as e:
            ui.notify(f"The control plane is unreachable ({type(e).__name__}); try again.", type="negative")
            return
        ui.notify("Cancel requested: the job stops within seconds.")


async def page(link: ControlLink, job_id: str) -> None:
    try:
        record = await link.client.job(job_id)
    except RemoteError as e:
        ui.label(f"Job {job_id}: {e.message}").classes("q-pa-md text-negative").props("data-testid=job-missing")
        return
    except httpx.HTTPError as e:
        ui.label(f"The control plane is unreachable ({type(e).__name__}); reload in a moment.").classes(
            "q-pa-md text-negative"
        ).props("data-testid=job-missing")
        return
    JobPage(link, JobView.from_record(record))

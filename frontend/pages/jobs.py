"""Jobs list: the caller's jobs, newest first, with status, progress, workflow and age; refreshed live."""

from __future__ import annotations

import httpx
import structlog
from nicegui import ui

from client.api import RemoteError
from client.format import age, percent
from common.models.job_schema import JobRecord
from frontend.format import status_color
from frontend.link import ControlLink

log = structlog.get_logger(__name__)

REFRESH_SECONDS = 2.0
PAGE_SIZE = 50


class JobRow:
    """One job as a card row, updated in place so the list does not flicker."""

    def __init__(self, job: JobRecord) -> None:
        self.job_id = job.job_id
        with (
            ui.link(target=f"/jobs/{job.job_id}")
            .classes("w-full no-underline text-inherit")
            .props(f"data-testid=job-{job.job_id}") as self.element,
            ui.card().classes("w-full q-pa-sm").props("flat bordered"),
            ui.row().classes("w-full items-center gap-3"),
        ):
            self.pill = ui.badge().props("data-testid=job-status")
            ui.label(job.workflow).classes("text-weight-medium").props("data-testid=job-workflow")
            ui.label(job.job_id).classes("text-caption text-grey-7 ellipsis").style("max-width: 10rem")
            self.bar = ui.linear_progress(show_value=False, size="8px").classes("col-grow").style("min-width: 6rem")
            self.pct = ui.label().classes("text-caption").style("min-width: 3rem").props("data-testid=job-progress")
            self.age = ui.label().classes("text-caption text-grey-7").props("data-testid=job-age")
        self.update(job)

    def update(self, job: JobRecord) -> None:
        self.pill.set_text(job.status)
        self.pill.props(f"color={status_color(job.status)}")
        self.bar.set_value(job.progress or 0.0)
        self.pct.set_text(percent(job.progress))
        self.age.set_text(age(job.created_at))


class JobsList:
    def __init__(self, link: ControlLink) -> None:
        self.link = link
        self.rows: dict[str, JobRow] = {}
        with ui.column().classes("w-full max-w-4xl mx-auto q-pa-md gap-2"):
            with ui.row().classes("w-full items-center justify-between"):
                ui.label("Jobs").classes("text-h5")
                ui.button("New job", icon="add", on_click=lambda: ui.navigate.to("/")).props("flat")
            self.empty = ui.label("No jobs yet: start one from New job.").props("data-testid=jobs-empty")
            self.problem = ui.label().classes("text-negative").props("data-testid=jobs-problem")
            self.container = ui.column().classes("w-full gap-2").props("data-testid=jobs")
        self.timer = ui.timer(REFRESH_SECONDS, self.refresh, immediate=True)

    async def refresh(self) -> None:
        try:
            jobs, _ = await self.link.client.jobs(limit=PAGE_SIZE)
        except (RemoteError, httpx.HTTPError) as e:
            self.problem.set_text(f"Cannot list jobs right now ({e}); retrying.")
            return
        self.problem.set_text("")
        self.show(jobs)

    def show(self, jobs: list[JobRecord]) -> None:
        """Update rows in place; new jobs go on top, in the server's (newest first) order."""
        self.empty.set_visibility(not jobs)
        keep = {j.job_id for j in jobs}
        for job_id in [j for j in self.rows if j not in keep]:
            self.container.remove(self.rows.pop(job_id).element)
        for index, job in enumerate(jobs):
            row = self.rows.get(job.job_id)
            if row is None:
                with self.container:
                    row = self.rows[job.job_id] = JobRow(job)
                row.element.move(target_index=index)
            else:
                row.update(job)


def page(link: ControlLink) -> None:
    JobsList(link)

"""Assembles the UI: pages, the artifact route and the control link's lifecycle on NiceGUI's FastAPI app."""

from __future__ import annotations

from nicegui import app, ui

from common.settings import Settings
from frontend import files
from frontend.link import ControlLink
from frontend.pages import job, jobs, layout, new_job


def create(settings: Settings) -> ControlLink:
    """Register everything on NiceGUI's app for these settings; returns the link the pages share."""
    link = ControlLink(settings)
    app.on_startup(link.start)
    app.on_shutdown(link.stop)
    files.mount(app, link)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> dict[str, object]:
        """Serving pages; whether control answers is reported, not required (the pages show it too)."""
        return {"status": "ready", "control": link.online}

    @ui.page("/")
    async def new_job_page() -> None:
        layout.frame(link, "New job")
        await new_job.page(link)

    @ui.page("/jobs")
    def jobs_page() -> None:
        layout.frame(link, "Jobs")
        jobs.page(link)

    @ui.page("/jobs/{job_id}", response_timeout=30)
    async def job_page(job_id: str) -> None:
        layout.frame(link, f"Job {job_id}")
        await job.page(link, job_id)

    return link


def run(settings: Settings) -> None:
    create(settings)
    ui.run(
        host=settings.host,
        port=settings.frontend_port,
        title="Biplane",
        reload=False,
        show=False,
        favicon="✈️",
        uvicorn_logging_level="warning",
        show_welcome_message=False,
    )

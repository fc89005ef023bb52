"""The frame every page shares: header with navigation, the connection badge and the demo/worker banners."""

from __future__ import annotations

from nicegui import ui

from frontend.link import ControlLink

DEMO_TEXT = "Workers run demo models: outputs are noise; configure real model paths (BIPLANE_SD_MODEL, …)."
NO_WORKER_TEXT = "No worker is alive: data-plane jobs will wait in the queue."


def frame(link: ControlLink, title: str) -> None:
    """Header, badge and banners; the page body follows in the current slot."""
    ui.page_title(f"{title} · Biplane")
    with ui.header().classes("items-center justify-between flex-wrap gap-2 px-4 py-2"):
        with ui.row().classes("items-center gap-4 no-wrap"):
            ui.link("Biplane", "/").classes("text-h6 text-white no-underline")
            ui.link("New job", "/").classes("text-white").props("data-testid=nav-new")
            ui.link("Jobs", "/jobs").classes("text-white").props("data-testid=nav-jobs")
        connection_badge(link)
    banners(link)


def connection_badge(link: ControlLink) -> None:
    """Green while control answers /health, red while it does not (the page keeps trying and catches up)."""
    with ui.row().classes("items-center gap-1").props('role=status aria-live=polite aria-label="Control plane link"'):
        ui.badge("connected", color="positive").props("data-testid=link-online").bind_visibility_from(
            link, "online"
        ).tooltip("The UI server reaches the control plane")
        ui.badge("reconnecting…", color="negative").props("data-testid=link-offline").bind_visibility_from(
            link, "online", backward=lambda up: not up
        ).tooltip("The control plane does not answer; the page catches up once it is back")


def banners(link: ControlLink) -> None:
    ui.label(DEMO_TEXT).classes("w-full bg-amber-2 text-amber-10 q-pa-sm text-center").props(
        "data-testid=demo-banner role=alert"
    ).bind_visibility_from(link, "demo")
    ui.label(NO_WORKER_TEXT).classes("w-full bg-grey-3 q-pa-sm text-center").props(
        "data-testid=no-worker-banner"
    ).bind_visibility_from(link, "workers_alive", backward=lambda n: n == 0)

"""Assembles the control plane's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from common.registry import Registry, load_modules
from common.service import create_plane_app
from common.settings import Settings
from control.tasks import registry as control_tasks


def build_registry(settings: Settings) -> Registry:
    """Control tasks plus any plugin modules named in BIPLANE_TASK_MODULES (their control-plane part)."""
    registry = Registry().merge(control_tasks)
    return registry.merge(load_modules(settings.task_module_list()))


def create_app(settings: Settings) -> FastAPI:
    return create_plane_app("control", settings, build_registry(settings), title="Biplane control plane")

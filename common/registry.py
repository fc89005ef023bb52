"""Task registry: `@registry.task(...)` registers a service once; its manifest entry derives from it."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from common.context import TaskContext
from common.models.graph_schema import Plane
from common.models.manifest_schema import CapabilityManifest, ServiceCapability
from common.params import CATALOG

TaskFn = Callable[[TaskContext, Any], dict[str, Any] | None | Awaitable[dict[str, Any] | None]]

_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


@dataclass(frozen=True)
class Task:
    """A registered service. Sync functions run in a thread; async ones on the event loop."""

    name: str
    plane: Plane
    fn: TaskFn
    params: type[BaseModel]
    description: str = ""
    outputs: tuple[str, ...] = ()
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def capability(self, demo: bool = False) -> ServiceCapability:
        return ServiceCapability(
            service=self.name,
            plane=self.plane,
            description=self.description,
            params=self.params.model_json_schema(by_alias=True),
            outputs=list(self.outputs),
            runtime=self.runtime,
            demo=demo,
        )


class Registry:
    """Tasks by name. Each process builds its registry explicitly (no global default)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def task(
        self,
        name: str,
        *,
        plane: Plane,
        params: type[BaseModel],
        outputs: tuple[str, ...] = (),
        description: str | None = None,
        **runtime: Any,
    ) -> Callable[[TaskFn], TaskFn]:
        """Register the decorated function as service `name` on `plane`, taking `params`.

        The service's description: `description`, else the params model's docstring, else the function's."""

        def register(fn: TaskFn) -> TaskFn:
            said = description or _first_paragraph(params) or _first_paragraph(fn)
            self.add(Task(name, plane, fn, params, said, outputs, runtime))
            return fn

        return register

    def builtin(self, name: str, **kwargs: Any) -> Callable[[TaskFn], TaskFn]:
        """`task` for a built-in service: its plane and params model are those common/params.py's CATALOG states."""
        plane, params = CATALOG[name]
        return self.task(name, plane=plane, params=params, **kwargs)

    def add(self, task: Task) -> None:
        if not _NAME.fullmatch(task.name):
            raise ValueError(f"task name {task.name!r} must match {_NAME.pattern}")
        if task.plane not in ("control", "data"):
            raise ValueError(f"task {task.name!r}: plane must be 'control' or 'data'")
        if task.name in self._tasks and self._tasks[task.name] is not task:
            raise ValueError(f"task {task.name!r} is registered twice")
        self._tasks[task.name] = task

    def merge(self, other: Registry) -> Registry:
        for task in other:
            self.add(task)
        return self

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def on(self, plane: Plane) -> list[Task]:
        return [t for t in self if t.plane == plane]

    def manifest(self, plane: Plane, *, demo: bool = False, **extra: Any) -> CapabilityManifest:
        return CapabilityManifest(
            plane=plane, demo=demo, services=[t.capability(demo) for t in self.on(plane)], **extra
        )


def _first_paragraph(obj: object) -> str:
    doc = getattr(obj, "__doc__", None)  # a class's own docstring (inspect.getdoc would inherit BaseModel's)
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def load_modules(modules: list[str]) -> Registry:
    """Merge the `registry` attribute of each named module (plugins and test tasks)."""
    merged = Registry()
    for name in modules:
        module = importlib.import_module(name)
        reg = getattr(module, "registry", None)
        if not isinstance(reg, Registry):
            raise ValueError(f"module {name} has no `registry` (a common.registry.Registry)")
        merged.merge(reg)
    return merged

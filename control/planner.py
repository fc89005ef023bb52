"""Plans jobs from workflow templates and validates any graph; each failure names its JSON pointer."""

from __future__ import annotations

import graphlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from common import basemodels
from common.errors import PlanError
from common.models.graph_schema import GraphDocument, Plane
from common.models.manifest_schema import CapabilityManifest
from common.params import CATALOG
from common.registry import Registry
from common.settings import Settings
from control.errors import pointer_of

#: Workflow templates: node id -> (service, dependencies). Node ids double as S3 folder names.
TEMPLATES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "lora": {
        "prepare": ("prepare_assets", ()),
        "train_lora": ("train_lora", ("prepare",)),
        "publish": ("publish_artifacts", ("train_lora",)),
    },
    "voice": {
        "prepare": ("prepare_assets", ()),
        "train_voice": ("train_voice", ("prepare",)),
        "publish": ("publish_artifacts", ("train_voice",)),
    },
    "video": {
        "render_video": ("render_video", ()),
        "publish": ("publish_artifacts", ("render_video",)),
    },
    "studio": {
        "prepare": ("prepare_assets", ()),
        "train_lora": ("train_lora", ("prepare",)),
        "train_voice": ("train_voice", ("prepare",)),
        "render_video": ("render_video", ("train_lora", "train_voice")),
        "publish": ("publish_artifacts", ("render_video",)),
    },
    "story": {
        "generate_script": ("generate_script", ()),
        "render_video": ("render_video", ("generate_script",)),
        "publish": ("publish_artifacts", ("render_video",)),
    },
}

#: How much of the bar each service is worth (training dominates).
WEIGHTS = {
    "prepare_assets": 0.5,
    "publish_artifacts": 0.25,
    "generate_script": 0.5,
    "train_lora": 6,
    "train_voice": 3,
    "render_video": 3,
}


def with_script(template: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The template with generate_script first and render_video after it (studio's "write the script" option)."""
    out = {"generate_script": ("generate_script", ())} | template
    service, deps = out["render_video"]
    out["render_video"] = (service, (*deps, "generate_script"))
    return out


@dataclass(frozen=True)
class Service:
    name: str
    plane: Plane
    model: type[BaseModel] | None  # built-in or locally registered
    schema: dict[str, Any] | None  # from a worker manifest (plugins only known to workers)


class UnknownBaseModel(PlanError):
    code = "unknown_base_model"


def check_base_model(settings: Settings, name: Any, pointer: str) -> None:
    """train_lora's baseModel names one of the deployment's base models (a 422 at pointer)."""
    if isinstance(name, str) and basemodels.find(settings, name) is None:
        names = ", ".join(b.name for b in basemodels.base_models(settings))
        raise UnknownBaseModel(f"unknown base model {name!r}; one of {names}", pointer=pointer)


def check_video_family(settings: Settings, family: str | None, pointer: str) -> None:
    """render_video with an SDXL LoRA needs an SDXL motion adapter (AnimateDiff SDXL): refused before it runs."""
    if family == "sdxl" and settings.sdxl_motion_adapter is None:
        raise PlanError(
            "render_video cannot animate an SDXL LoRA: no SDXL motion adapter is configured "
            "(BIPLANE_SDXL_MOTION_ADAPTER); train on an SD 1.x base model or configure one",
            pointer=pointer,
        )


def lora_family(settings: Settings, params: dict[str, Any]) -> str | None:
    """The family of the base model a train_lora node's params name (None: no such base model)."""
    found = basemodels.find(settings, params.get("baseModel"))
    return found.family if found else None


class Planner:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings, self.registry = settings, registry

    def services(self, manifests: Iterable[CapabilityManifest] = ()) -> dict[str, Service]:
        """Everything a graph may name: built-ins, locally registered tasks, and live workers' services."""
        known = {name: Service(name, plane, model, None) for name, (plane, model) in CATALOG.items()}
        for task in self.registry:
            known[task.name] = Service(task.name, task.plane, task.params, None)
        for m in manifests:
            for cap in m.services:
                if cap.service not in known:
                    known[cap.service] = Service(cap.service, cap.plane, None, cap.params)
        return known

    def build(
        self, workflow: str, params: dict[str, dict[str, Any]], context: dict[str, Any], *, script: bool = False
    ) -> GraphDocument:
        """A graph from a template; params by service name, as the route's edge checked them (see validate).
        script: add generate_script before render_video."""
        template = TEMPLATES.get(workflow)
        if template is None:
            raise PlanError(f"unknown workflow {workflow!r}; one of {sorted(TEMPLATES)}", pointer="/workflow")
        if script and "generate_script" not in template:
            template = with_script(template)
        nodes, edges = [], []
        for node_id, (service, deps) in template.items():
            plane = CATALOG[service][0]
            nodes.append(
                {
                    "id": node_id,
                    "service": service,
                    "plane": plane,
                    "params": params.get(service, {}),
                    "progressWeight": WEIGHTS.get(service, 1),
                }
            )
            edges += [{"from": d, "to": node_id} for d in deps]
        doc = {
            "schemaVersion": "biplane.graph.v1",
            "workflow": workflow,
            "context": context,
            "nodes": nodes,
            "edges": edges,
        }
        return self._check(doc, (), params=False)

    def validate(self, doc: Any, manifests: Iterable[CapabilityManifest] = ()) -> GraphDocument:
        """Parse and check a graph document; raise PlanError with the offending JSON pointer."""
        return self._check(doc, manifests, params=True)

    def _check(self, doc: Any, manifests: Iterable[CapabilityManifest], *, params: bool) -> GraphDocument:
        size = len(json.dumps(doc, separators=(",", ":")))
        if size > self.settings.max_graph_bytes:
            raise PlanError(f"graph is {size} bytes; the limit is {self.settings.max_graph_bytes}", pointer="")
        if isinstance(doc, dict):
            if len(doc.get("nodes") or []) > self.settings.max_graph_nodes:
                raise PlanError(f"more than {self.settings.max_graph_nodes} nodes", pointer="/nodes")
            if len(doc.get("edges") or []) > self.settings.max_graph_edges:
                raise PlanError(f"more than {self.settings.max_graph_edges} edges", pointer="/edges")
        try:
            graph = GraphDocument.model_validate(doc)
        except ValidationError as e:
            err = e.errors()[0]
            raise PlanError(f"{err['msg']}", pointer=pointer_of(err["loc"])) from e
        self._check_structure(graph)
        self._check_services(graph, self.services(manifests), params=params)
        self._check_videos(graph)
        return graph

    def _check_videos(self, graph: GraphDocument) -> None:
        """A render_video node after a train_lora node on an SDXL base needs an SDXL motion adapter."""
        nodes = {n.id: n for n in graph.nodes}
        for i, n in enumerate(graph.nodes):
            if n.service != "render_video":
                continue
            for e in graph.edges:
                dep = nodes[e.from_]
                if e.to == n.id and dep.service == "train_lora":
                    check_video_family(self.settings, lora_family(self.settings, dep.params or {}), f"/nodes/{i}")

    def _check_structure(self, graph: GraphDocument) -> None:
        index: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            if n.id in index:
                raise PlanError(f"duplicate node id {n.id!r}", pointer=f"/nodes/{i}/id")
            index[n.id] = i
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter({n.id: () for n in graph.nodes})
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(graph.edges):
            for end, name in (("from", e.from_), ("to", e.to)):
                if name not in index:
                    raise PlanError(f"edge {end} unknown node {name!r}", pointer=f"/edges/{i}/{end}")
            if e.from_ == e.to or (e.from_, e.to) in seen:
                raise PlanError(f"self or duplicate edge {e.from_}->{e.to}", pointer=f"/edges/{i}")
            seen.add((e.from_, e.to))
            sorter.add(e.to, e.from_)
        try:
            sorter.prepare()
        except graphlib.CycleError as e:
            cycle = " -> ".join(e.args[1])
            raise PlanError(f"the graph has a cycle: {cycle}", pointer="/edges") from e

    def _check_base_model(self, service: str, params: dict[str, Any], i: int) -> None:
        if service == "train_lora":
            check_base_model(self.settings, params.get("baseModel"), f"/nodes/{i}/params/baseModel")

    def _check_services(self, graph: GraphDocument, known: dict[str, Service], *, params: bool) -> None:
        for i, n in enumerate(graph.nodes):
            svc = known.get(n.service)
            if svc is None:
                raise PlanError(f"unknown service {n.service!r}", pointer=f"/nodes/{i}/service")
            if svc.plane != n.plane:
                raise PlanError(f"service {n.service!r} runs on the {svc.plane} plane", pointer=f"/nodes/{i}/plane")
            if not params:
                continue
            given = n.params or {}
            if svc.model is not None:
                try:
                    svc.model.model_validate(given)
                except ValidationError as e:
                    err = e.errors()[0]
                    raise PlanError(
                        f"invalid params for {n.service}: {err['msg']}",
                        pointer=f"/nodes/{i}/params{pointer_of(err['loc'])}",
                    ) from e
                self._check_base_model(n.service, given, i)
            elif svc.schema is not None:
                error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(svc.schema).iter_errors(given))
                if error is not None:
                    raise PlanError(
                        f"invalid params for {n.service}: {error.message}",
                        pointer=f"/nodes/{i}/params{pointer_of(list(error.absolute_path))}",
                    )

"""Named base models: capabilities list them; an unknown train_lora baseModel is a 422 with its pointer."""

from __future__ import annotations

import json
from collections.abc import Callable

from redis.asyncio import Redis

from common.models.graph_schema import GraphDocument
from common.settings import Settings
from control.auth import owner_of
from tests.support.api import client
from tests.support.jobs import Harness
from tests.support.media import png, wav
from tests.support.processes import Plane


def test_capabilities_list_base_models_and_unknown_names_are_422(
    settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    configured = settings.model_copy(update={"base_models": "anime=sdxl:org/anime-xl@v3,sd15=sd15:demo"})
    api = client(plane_factory("control", configured).url)
    assert api.get("/api/capabilities").json()["baseModels"] == [
        {"name": "anime", "family": "sdxl", "reference": "org/anime-xl@v3"},
        {"name": "sd15", "family": "sd15", "reference": "demo"},
    ]

    image = [("images", ("a.png", png(), "image/png"))]
    r = api.post("/api/train", data={"prompt": "p", "options": json.dumps({"baseModel": "sdxl"})}, files=image)
    body = r.json()
    assert (r.status_code, body["code"], body["pointer"]) == (422, "unknown_base_model", "/options/baseModel")
    assert "anime, sd15" in body["message"]
    r = api.post("/api/train", data={"prompt": "p", "options": json.dumps({"baseModel": "Bad Name"})}, files=image)
    assert (r.status_code, r.json()["pointer"]) == (422, "/options/baseModel")
    ok = api.post("/api/train", data={"prompt": "p", "options": json.dumps({"baseModel": "sd15"})}, files=image)
    assert ok.status_code == 202, ok.text

    graph = {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "custom",
        "nodes": [{"id": "t", "service": "train_lora", "plane": "data", "params": {"baseModel": "sdxl"}}],
        "edges": [],
    }
    r = api.post("/api/jobs", json=graph)
    assert (r.status_code, r.json()["code"], r.json()["pointer"]) == (
        422,
        "unknown_base_model",
        "/nodes/0/params/baseModel",
    )


async def test_video_of_an_sdxl_lora_is_refused_without_an_sdxl_motion_adapter(
    settings: Settings, plane_factory: Callable[..., Plane], redis: Redis
) -> None:
    api = client(plane_factory("control", settings).url)
    files = [("images", ("a.png", png(), "image/png")), ("clips", ("a.wav", wav(), "audio/wav"))]
    studio = {"prompt": "p", "workflow": "studio", "transcripts": json.dumps(["hello"]), "narration": "hi"}
    r = api.post("/api/train", data={**studio, "options": json.dumps({"baseModel": "sdxl"})}, files=files)
    body = r.json()
    assert (r.status_code, body["pointer"]) == (422, "/options/baseModel") and "BIPLANE_SDXL_MOTION_ADAPTER" in body[
        "message"
    ]
    assert (
        api.post("/api/train", data={**studio, "options": json.dumps({"baseModel": "sd15"})}, files=files).status_code
        == 202
    )

    nodes = [
        {"id": "t", "service": "train_lora", "plane": "data", "params": {"baseModel": "sdxl"}},
        {"id": "v", "service": "render_video", "plane": "data", "params": {}},
    ]
    graph = {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "custom",
        "nodes": nodes,
        "edges": [{"from": "t", "to": "v"}],
    }
    r = api.post("/api/jobs", json=graph)
    assert (r.status_code, r.json()["pointer"]) == (422, "/nodes/1") and "SDXL" in r.json()["message"]

    # /api/render of an earlier SDXL LoRA job (its train_lora output names the family)
    h = Harness(redis, settings)
    done = await h.store.create(
        GraphDocument.model_validate({**graph, "nodes": nodes[:1], "edges": []}), owner=owner_of("test-key-1")
    )
    await h.store.node_started(done.job_id, "t", start_job=True)
    lora = {"key": f"jobs/{done.job_id}/t/pytorch_lora_weights.safetensors"}
    await h.store.node_completed(done.job_id, "t", {"lora": lora, "baseModel": {"name": "sdxl", "family": "sdxl"}}, 1.0)
    r = api.post("/api/render", json={"prompt": "p", "lora": {"job": done.job_id}})
    assert (r.status_code, r.json()["pointer"]) == (422, "/lora") and "SDXL" in r.json()["message"]

    # with an SDXL motion adapter configured all three are accepted at plan time
    adapter = settings.model_copy(update={"sdxl_motion_adapter": "org/animatediff-sdxl"})
    ok = client(plane_factory("control", adapter).url)
    assert ok.post("/api/jobs", json=graph).status_code == 202
    assert ok.post("/api/render", json={"prompt": "p", "lora": {"job": done.job_id}}).status_code == 202

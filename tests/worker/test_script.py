"""generate_script against a real OpenAI-compatible server (`transformers serve`, started here by
`python -m worker.llm` with the demo LLMs built locally): a JSON answer, a plain-text answer through the
fallback, a server that is down; and a `story` job through control and worker, narrated by the script."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from common.settings import Settings
from infra.dev.devstack import free_port, stop_process, wait_until
from tests.support.api import client, ws_follow
from tests.support.processes import ROOT, Plane, make_settings

pytestmark = [pytest.mark.ml, pytest.mark.timeout(900)]  # the first test builds the demo models and LLMs


def _health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def llm_url(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m worker.llm` on a free port: builds the demo LLMs into the demo model directory, then serves."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    env |= {"BIPLANE_DEMO_MODEL_DIR": str(demo_dir), "BIPLANE_LLM_PORT": str(port), "PYTHONPATH": str(ROOT)}
    log = tmp_path_factory.mktemp("llm") / "llm.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.llm"], env=env, cwd=ROOT, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _health(url), 300, "worker.llm /health", proc)
    except Exception as e:
        stop_process(proc)
        raise RuntimeError(f"{e}\n{log.read_text()[-3000:]}") from e
    yield f"{url}/v1"
    stop_process(proc)


@pytest.fixture
def llm_settings(redis_server: Any, s3_server: Any, demo_dir: Path, llm_url: str) -> Settings:
    from worker.ml.demo_llm import demo_llm_dir

    plain = str(demo_llm_dir(demo_dir, "plain").resolve())  # the fallback test's model: offered besides the default
    return make_settings(
        redis_server, s3_server, demo_model_dir=demo_dir, llm_url=llm_url, llm_models=plain, max_node_attempts=2
    )


def script_graph(params: dict[str, Any]) -> dict[str, Any]:
    node = {"id": "script", "service": "generate_script", "plane": "control", "params": params}
    return {"schemaVersion": "biplane.graph.v1", "workflow": "custom", "nodes": [node], "edges": []}


async def run_script(control: Plane, params: dict[str, Any]) -> dict[str, Any]:
    api = client(control.url)
    r = api.post("/api/jobs", json=script_graph(params))
    assert r.status_code == 202, r.text
    await ws_follow(control.url, r.json()["jobId"], since=0)
    return dict(api.get(f"/api/jobs/{r.json()['jobId']}").json())


async def test_json_answer_is_parsed(llm_settings: Settings, plane_factory: Callable[..., Plane]) -> None:
    from worker.ml.demo_llm import NARRATION, STAGE

    control = plane_factory("control", llm_settings)
    record = await run_script(control, {"prompt": "the history of jazz", "tone": "dramatic", "length": 12})
    assert record["status"] == "completed", record["error"]
    out = record["graph"]["nodes"][0]["output"]
    assert out["stagePrompt"] == STAGE and out["narration"] == NARRATION and out["structured"] is True
    assert out["tokensUsed"] > 20 and out["temperature"] == 0.4
    assert out["model"] == str((llm_settings.demo_model_dir / "llm-json").resolve())


async def test_plain_answer_goes_through_the_fallback(
    llm_settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    from worker.ml.demo_llm import NARRATION, STAGE, demo_llm_dir

    control = plane_factory("control", llm_settings)
    plain = str(demo_llm_dir(llm_settings.demo_model_dir, "plain").resolve())
    record = await run_script(control, {"prompt": "a lighthouse", "model": plain, "temperature": 0.9})
    assert record["status"] == "completed", record["error"]
    out = record["graph"]["nodes"][0]["output"]
    assert out["structured"] is False
    assert out["stagePrompt"] == STAGE, "the first line is the stage prompt"
    assert out["narration"] == f"{STAGE}\n{NARRATION}", "the whole text is the narration"
    assert out["model"] == plain and out["temperature"] == 0.9
    # A model the deployment does not offer (any name or path the LLM server could load) fails the node.
    other = await run_script(control, {"prompt": "a lighthouse", "model": "/etc"})
    assert other["status"] == "failed" and "'/etc' is not offered here" in other["error"], other["error"]


async def test_server_down_fails_the_node_with_the_reason(
    redis_server: Any, s3_server: Any, plane_factory: Callable[..., Plane]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = make_settings(redis_server, s3_server, llm_url=down, max_node_attempts=2)
    control = plane_factory("control", settings)
    record = await run_script(control, {"prompt": "a robot chef"})
    node = record["graph"]["nodes"][0]
    assert record["status"] == "failed" and node["status"] == "failed"
    assert f"the LLM at {down} cannot answer" in node["error"] and "onnect" in node["error"], node["error"]
    assert node["attempts"] == 2, "retried per the node's policy (BIPLANE_MAX_NODE_ATTEMPTS)"
    rejected = client(control.url).post("/api/jobs", json=script_graph({"prompt": "x", "temperature": 3}))
    assert rejected.status_code == 422 and rejected.json()["pointer"] == "/nodes/0/params/temperature"


async def test_story_job_narrates_the_generated_script(
    llm_settings: Settings, plane_factory: Callable[..., Plane]
) -> None:
    from worker.ml.demo_llm import NARRATION, STAGE
    from worker.ml.device import pick
    from worker.ml.models import resolve
    from worker.ml.voice import load_voice

    control = plane_factory("control", llm_settings)
    plane_factory("worker", llm_settings)
    api = client(control.url)
    body = {
        "topic": "a paper plane over the harbour",
        "script": {"tone": "calm", "length": 10},
        "frames": 4,
        "fps": 4,
        "width": 32,
        "height": 32,
        "steps": 2,
    }
    r = api.post("/api/story", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    _, events = await ws_follow(control.url, job_id, since=0)
    record = api.get(f"/api/jobs/{job_id}").json()
    assert events[-1]["status"] == "completed", record["error"]
    nodes = {n["id"]: n for n in record["graph"]["nodes"]}
    assert list(nodes) == ["generate_script", "render_video", "publish"]
    script, video = nodes["generate_script"]["output"], nodes["render_video"]["output"]
    assert script["narration"] == NARRATION and video["narration"] == NARRATION and video["prompt"] == STAGE
    assert video["hasAudio"] is True

    # The audio track is the narration spoken by the demo voice: the same speech, synthesized here, lasts as long.
    paths = resolve(llm_settings, "tts_model", "vocoder_model")
    speech = load_voice(paths.tts, paths.vocoder, None, pick("fp32"), paths.demo).synthesize(NARRATION)
    assert video["audioSeconds"] == pytest.approx(len(speech) / 16000, abs=0.01)
    with av.open(io.BytesIO(api.get(f"/api/jobs/{job_id}/artifacts/render_video/video.mp4").content)) as mp4:
        audio = mp4.streams.audio[0]
        seconds = sum(frame.samples for frame in mp4.decode(audio=0)) / audio.rate
    assert seconds == pytest.approx(video["audioSeconds"], abs=0.1)

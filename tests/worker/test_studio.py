"""The studio workflow end to end: control + worker processes, uploads through POST /api/train."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import av
import pytest
import soundfile

from client.demo import NARRATION, TRANSCRIPTS, sample_inputs
from common.settings import Settings
from tests.support.api import client, ws_follow
from tests.support.processes import Plane

pytestmark = pytest.mark.ml


async def test_studio_job_produces_every_artifact(
    ml_settings: Settings, plane_factory: Callable[..., Plane], tmp_path: object
) -> None:
    from pathlib import Path

    control = plane_factory("control", ml_settings)
    plane_factory("worker", ml_settings)
    images, clips, _ = sample_inputs(Path(str(tmp_path)) / "inputs")
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in sorted(images.iterdir())]
    files += [("clips", (p.name, p.read_bytes(), "audio/wav")) for p in sorted(clips.iterdir())]
    data = {
        "prompt": "a sample shape",
        "workflow": "studio",
        "narration": NARRATION,
        "transcripts": json.dumps(TRANSCRIPTS),
        "options": json.dumps(
            {"steps": 4, "rank": 4, "resolution": 32, "sampleEvery": 2, "checkpointEvery": 2, "sampleSteps": 2}
        ),
        "voiceOptions": json.dumps({"steps": 4}),
        "videoOptions": json.dumps({"frames": 4, "fps": 4, "width": 32, "height": 32, "steps": 2}),
    }
    api = client(control.url)
    r = api.post("/api/train", data=data, files=files)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    _, events = await ws_follow(control.url, job_id, since=0)
    record = api.get(f"/api/jobs/{job_id}").json()
    assert events[-1]["status"] == "completed", record["error"]
    assert [n["status"] for n in record["graph"]["nodes"]] == ["completed"] * 5
    items = {a["name"]: a for a in api.get(f"/api/jobs/{job_id}/artifacts").json()["items"]}
    manifest = api.get(f"/api/jobs/{job_id}/artifacts/manifest.json").json()
    listed = {a["name"]: a["sha256"] for a in manifest["artifacts"]}
    for name, meta in items.items():
        if name != "manifest.json":
            assert listed[name] == meta["sha256"], name
    assert any(n.endswith("pytorch_lora_weights.safetensors") for n in listed)
    wav = next(n for n in listed if n.endswith(".wav"))
    info = soundfile.info(io.BytesIO(api.get(f"/api/jobs/{job_id}/artifacts/{wav}").content))
    assert info.samplerate == 16000 and info.frames > 0
    mp4 = next(n for n in listed if n.endswith(".mp4"))
    with av.open(io.BytesIO(api.get(f"/api/jobs/{job_id}/artifacts/{mp4}").content)) as f:
        frames = sum(1 for _ in f.decode(video=0))
        assert frames == 4 and f.streams.audio, "narrated video has an audio track"
    assert any(n.endswith(".png") and "render_video" in n for n in listed), "poster"

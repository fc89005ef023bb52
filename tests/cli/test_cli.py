"""The `biplane` console script as a real process against a real control + worker."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common.settings import Settings
from tests.support.api import client, graph_doc
from tests.support.processes import ROOT, Plane

BIPLANE = str(Path(sys.executable).parent / "biplane")


def cli(url: str, *args: str, key: str = "test-key-1", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    env.update({"BIPLANE_URL": url, "BIPLANE_API_KEY": key, "COLUMNS": "200"})
    return subprocess.run([BIPLANE, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_follow_exit_codes_artifacts_and_json(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    control = plane_factory("control", settings)
    plane_factory("worker", settings)
    api = client(control.url)

    done = api.post("/api/jobs", json=graph_doc({"steps": 3})).json()["jobId"]
    followed = cli(control.url, "follow", done)
    assert followed.returncode == 0, followed.stderr
    assert "completed" in followed.stderr

    status = cli(control.url, "--json", "status", done)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "completed"
    listed = cli(control.url, "--json", "jobs")
    assert [j["jobId"] for j in json.loads(listed.stdout)] == [done]

    got = cli(control.url, "artifacts", done, "--download", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        assert hashlib.sha256((tmp_path / "out" / art["name"]).read_bytes()).hexdigest() == art["sha256"]

    slow = api.post("/api/jobs", json=graph_doc({"steps": 400, "step_seconds": 0.05})).json()["jobId"]
    assert cli(control.url, "cancel", slow).returncode == 0
    canceled = cli(control.url, "follow", slow)
    assert canceled.returncode == 3, canceled.stderr

    failing = api.post("/api/jobs", json=graph_doc({"fail": "input"})).json()["jobId"]
    failed = cli(control.url, "follow", failing)
    assert failed.returncode == 1 and "bad input on purpose" in failed.stderr

    caps = cli(control.url, "--json", "capabilities")
    assert json.loads(caps.stdout)["workersAlive"] == 1


def test_bad_arguments_exit_2_with_a_message(control: Plane, tmp_path: Path) -> None:
    missing = cli(control.url, "train", "--prompt", "x")
    assert missing.returncode == 2 and "--images" in missing.stderr
    empty = cli(control.url, "train", "--images", str(tmp_path), "--prompt", "x")
    assert empty.returncode == 2 and "no images" in empty.stderr
    (tmp_path / "a.png").write_bytes(b"not an image")
    rejected = cli(control.url, "train", "--images", str(tmp_path), "--prompt", "x")
    assert rejected.returncode == 2 and "unsupported_media_type" in rejected.stderr
    bad_options = cli(control.url, "train", "--images", str(tmp_path), "--prompt", "x", "--options", "{nope")
    assert bad_options.returncode == 2 and "not JSON" in bad_options.stderr
    no_key = cli(control.url, "jobs", key="")
    assert no_key.returncode == 2 and "API key" in no_key.stderr
    wrong_key = cli(control.url, "jobs", key="wrong")
    assert wrong_key.returncode == 2 and "unauthorized" in wrong_key.stderr
    unknown = cli(control.url, "status", "f" * 32)
    assert unknown.returncode == 2 and "not_found" in unknown.stderr


def test_train_follow_then_download_matches_the_manifest(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    from tests.support.media import png
    from tests.support.ui import LORA_OPTIONS

    control = plane_factory("control", settings)
    plane_factory("worker", settings)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(png(color=(80 * i, 50, 50)))
    trained = cli(
        control.url,
        "train",
        "--images",
        str(images),
        "--prompt",
        "three squares",
        "--options",
        json.dumps(LORA_OPTIONS),
        "--follow",
    )
    assert trained.returncode == 0, trained.stderr
    job_id = json.loads(cli(control.url, "--json", "jobs").stdout)[0]["jobId"]
    got = cli(control.url, "artifacts", job_id, "--download", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    lora = next(a for a in manifest["artifacts"] if a["name"].endswith("pytorch_lora_weights.safetensors"))
    data = (tmp_path / "out" / lora["name"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == lora["sha256"] and len(data) == lora["size"]


def test_train_starts_from_the_recommendation_and_prints_the_estimate_and_warnings(
    settings: Settings, plane_factory: Callable[..., Plane], tmp_path: Path
) -> None:
    from tests.support.media import png

    control = plane_factory("control", settings)
    plane_factory("worker", settings)
    api = client(control.url)
    deadline = time.monotonic() + 30
    while not (caps := api.get("/api/capabilities").json())["workersAlive"]:
        assert time.monotonic() < deadline, "no worker heartbeat"
        time.sleep(0.2)
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(png())

    short = cli(
        control.url, "--json", "train", "--images", str(images), "--prompt", "a box", "--options", '{"seed": 7}'
    )
    assert short.returncode == 0, short.stderr
    answer = json.loads(short.stdout)
    assert answer["warnings"] == [] and answer["estimateSeconds"] > 0
    assert "the alive workers' recommendation, then yours): 64 px" in short.stderr
    assert "estimated duration: about" in short.stderr
    job = api.get(f"/api/jobs/{answer['jobId']}").json()
    sent = next(n["params"] for n in job["graph"]["nodes"] if n["service"] == "train_lora")
    assert sent == {**caps["recommended"]["train_lora"], "seed": 7}  # the user's option on top

    long = cli(control.url, "train", "--images", str(images), "--prompt", "a box", "--options", '{"steps": 20000}')
    assert long.returncode == 0, long.stderr
    assert "warning:" in long.stderr and "[long_job]" in long.stderr and "queued" in long.stdout
    shown = cli(control.url, "capabilities")
    assert shown.returncode == 0 and "recommended for train_lora on the alive workers: 64 px" in shown.stdout
    for job_id in [answer["jobId"], *[j["jobId"] for j in api.get("/api/jobs").json()["items"]]]:
        api.post(f"/api/jobs/{job_id}/cancel")


def test_story_submits_topic_script_options_and_video_options(control: Plane) -> None:
    r = cli(control.url, "--json", "story", "a paper plane", "--tone", "calm", "--length", "8", "--persona", "a poet")
    r2 = cli(control.url, "story", "x", "--options", '{"frames": 0}')
    assert r.returncode == 0, r.stderr
    job = client(control.url).get(f"/api/jobs/{json.loads(r.stdout)['jobId']}").json()
    assert job["workflow"] == "story"
    nodes = {n["id"]: n for n in job["graph"]["nodes"]}
    assert list(nodes) == ["generate_script", "render_video", "publish"]
    assert nodes["generate_script"]["params"] == {
        "tone": "calm",
        "length": 8,
        "temperature": 0.4,
        "persona": "a poet",
        "prompt": "a paper plane",
    }
    assert r2.returncode == 2 and "frames" in r2.stderr, "the control plane's 422 names the field"

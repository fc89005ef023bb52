"""Page logic with NiceGUI's simulated User: the real UI code against a real control process and worker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nicegui import ui
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing import User

from common.bridge import Bridge, connect
from common.estimate import Worker
from common.keys import Keys
from common.models.manifest_schema import CapabilityManifest, StepSeconds
from common.registry import Registry
from tests.frontend.conftest import Stack
from tests.support import fake_lora
from tests.support.api import client
from tests.support.jobs import eventually
from tests.support.media import png, wav
from tests.support.ui import LORA_OPTIONS, submit_lora


def by_testid(user: User, testid: str) -> list[Any]:
    assert user.client is not None
    return [el for el in user.client.elements.values() if el.props.get("data-testid") == testid]


def one(user: User, testid: str) -> Any:
    found = by_testid(user, testid)
    assert len(found) == 1, f"{len(found)} elements with data-testid={testid}"
    return found[0]


def text_of(user: User, testid: str) -> str:
    return str(one(user, testid).text)


def inside(element: Any, testid: str) -> Any:
    """The one descendant of element with this data-testid."""
    found = [d for d in element.descendants() if d.props.get("data-testid") == testid]
    assert len(found) == 1, f"{len(found)} descendants with data-testid={testid}"
    return found[0]


async def upload(user: User, testid: str, files: list[tuple[str, str, bytes]]) -> None:
    await one(user, testid).handle_uploads([SmallFileUpload(n, t, d) for n, t, d in files])


async def fill_form(user: User, images: list[tuple[str, str, bytes]], prompt: str = "a red box") -> None:
    await user.open("/")
    user.find("Prompt").type(prompt)
    await upload(user, "images", images)
    await eventually(lambda: text_of(user, "images-summary").startswith(f"{len(images)} image"), what="staged images")
    for wire, value in LORA_OPTIONS.items():
        one(user, f"opt-{wire}").value = value


async def test_new_job_runs_live_to_completion(user: User) -> None:
    images = [(f"im{i}.png", "image/png", png(color=(40 * i, 90, 200))) for i in range(3)]
    await fill_form(user, images)
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: user.back_history[-1].startswith("/jobs/"), what="job page")
    job_id = user.back_history[-1].rsplit("/", 1)[-1]
    await eventually(lambda: text_of(user, "job-status") == "completed", timeout=60, what="completed")
    assert text_of(user, "overall-percent") == "100 %"
    assert one(user, "overall-progress").value == 1.0
    for node_id, plane in (("prepare", "control"), ("train_lora", "data"), ("publish", "control")):
        row = one(user, f"node-{node_id}")
        await eventually(lambda row=row: inside(row, "node-status").text == "completed", what=f"{node_id} completed")
        assert inside(row, "node-plane").text == f"{plane} plane"
    steps = LORA_OPTIONS["steps"]
    assert f"step {steps}/{steps}" in inside(one(user, "node-train_lora"), "node-detail").text
    series = {s["name"]: s["data"] for s in one(user, "loss-chart").options["series"]}
    assert [p[0] for p in series["train_lora"]] == list(range(1, steps + 1)), "one loss point per step"
    previews = by_testid(user, "preview")
    assert previews and all(p.props["src"].startswith(f"/files/{job_id}/train_lora/") for p in previews)

    def artifact_rows() -> dict[str, Any]:
        return {inside(r, "artifact-name").text: r for r in by_testid(user, "artifact")}

    await eventually(lambda: "manifest.json" in artifact_rows(), what="artifacts listed")
    rows = artifact_rows()
    assert "train_lora/pytorch_lora_weights.safetensors" in rows and "prepare/images/002.png" in rows
    log_lines = [line.text for line in one(user, "log").default_slot.children]
    assert any(line.endswith("INFO job completed") for line in log_lines), log_lines
    # Preview and LoRA reach the browser through the UI server, the LoRA with control's sha256.
    preview = await user.http_client.get(previews[0].props["src"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert preview.content.startswith(b"\x89PNG")
    lora_row = rows["train_lora/pytorch_lora_weights.safetensors"]
    lora = await user.http_client.get(inside(lora_row, "download").props["href"])
    assert lora.status_code == 200 and lora.headers["content-disposition"].startswith("attachment;")
    assert inside(lora_row, "artifact-sha256").text == f"sha256 {hashlib.sha256(lora.content).hexdigest()}"
    assert (await user.http_client.get(f"/files/{job_id}/train_lora/missing.bin")).status_code == 404
    assert not one(user, "cancel").visible, "no cancel button on a finished job"


async def test_health_and_ready(user: User) -> None:
    assert (await user.http_client.get("/health")).json() == {"status": "ok"}
    answers = []

    async def ready() -> None:
        answers.append((await user.http_client.get("/ready")).json())

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not answers or answers[-1]["control"] is not True:
        assert loop.time() < deadline, answers[-1:]
        await ready()
        await asyncio.sleep(0.05)
    assert answers[-1] == {"status": "ready", "control": True}


async def test_form_explains_what_is_missing(user: User) -> None:
    await user.open("/")
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: one(user, "submit-error").visible)
    assert text_of(user, "submit-error") == "Write a prompt. Add 1 to 50 images."
    one(user, "workflow").value = "studio"
    one(user, "opt-steps").value = 0
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: "voice clip" in text_of(user, "submit-error"))
    error = text_of(user, "submit-error")
    assert "Advanced option steps: must be at least 1." in error
    assert "Add at least one voice clip." in error and "Write the narration, or a topic for the script." in error


async def test_form_sends_the_trigger_word_and_the_options_that_are_not_numbers(user: User, stack: Stack) -> None:
    await fill_form(user, [("im.png", "image/png", png())])
    trigger = one(user, "opt-triggerWord")
    assert trigger.props["hint"].startswith("Prepended to every caption"), "the schema's description, in view"
    assert trigger.props["maxlength"] == "100"  # the schema's maxLength
    assert one(user, "opt-imageFit").options == ["crop", "resize"]
    trigger.value = "x" * 101  # past what the browser lets anyone type
    one(user, "opt-snrGamma").value = 0
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: one(user, "submit-error").visible, what="problems shown")
    assert text_of(user, "submit-error") == (
        "Trigger word: must be at most 100 characters. Advanced option snrGamma: must be more than 0."
    )
    assert user.back_history == ["/"]
    trigger.value = ""
    user.find(kind=ui.input, content="Trigger word").type(" sks ")  # stripped, as the prompt is
    one(user, "opt-snrGamma").value = None  # left empty: min-SNR weighting stays off
    one(user, "opt-imageFit").value = "resize"
    one(user, "opt-gradientCheckpointing").value = True
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: user.back_history[-1].startswith("/jobs/"), what="job page")
    job_id = user.back_history[-1].rsplit("/", 1)[-1]
    nodes = {n["id"]: n for n in client(stack.control.url).get(f"/api/jobs/{job_id}").json()["graph"]["nodes"]}
    params = nodes["train_lora"]["params"]
    assert (params["triggerWord"], params["imageFit"], params["gradientCheckpointing"]) == ("sks", "resize", True)
    assert (params["optimizer"], params["steps"]) == ("adamw", LORA_OPTIONS["steps"])
    assert "snrGamma" not in params and "alpha" not in params, "an empty option is not sent: the service's default"
    assert nodes["prepare"]["params"]["imageFit"] == "resize", "images are squashed, not cropped, before training"


async def test_server_refusal_is_shown_with_its_message(user: User) -> None:
    await fill_form(user, [("notes.png", "image/png", b"just some text, not an image")])
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: one(user, "submit-error").visible, what="error shown")
    error = text_of(user, "submit-error")
    assert error.startswith("Unsupported file type (field images/0): images[0] ('notes.png') is not PNG, JPEG or WebP")
    assert error.endswith("[415 unsupported_media_type]")
    assert user.back_history == ["/"], "a refused job stays on the form"


async def test_ui_server_checks_type_and_size_again(user: User, stack: Stack) -> None:
    await user.open("/")
    too_big = stack.settings.max_upload_file_bytes + 1
    await upload(user, "images", [("a.gif", "image/gif", b"x"), ("big.png", "image/png", b"\0" * too_big)])
    await user.should_see("a.gif: only .png, .jpg, .jpeg, .webp, .txt files are accepted")  # .txt: captions
    await user.should_see("big.png is 20.0 MiB; the limit is 20.0 MiB")
    assert text_of(user, "images-summary") == "No images yet."
    await upload(user, "images", [("ok.png", "image/png", png()), ("ok2.png", "image/png", png())])
    await eventually(lambda: text_of(user, "images-summary").startswith("2 images ready"))
    user.find(kind=ui.upload).trigger("removed", ["ok.png"])  # what the browser reports when a file is removed
    assert text_of(user, "images-summary").startswith("1 image ready")


async def test_jobs_list_is_newest_first_and_live(user: User, stack: Stack) -> None:
    first = submit_lora(stack.control.url, [png()], LORA_OPTIONS)
    second = submit_lora(stack.control.url, [png()], LORA_OPTIONS)
    await user.open("/jobs")
    await eventually(lambda: len(by_testid(user, f"job-{second}")) == 1, what="jobs listed")
    order = [c.props["data-testid"] for c in one(user, "jobs").default_slot.children]
    assert order.index(f"job-{second}") < order.index(f"job-{first}"), "newest first"

    def row_text(job_id: str, testid: str) -> str:
        return str(inside(one(user, f"job-{job_id}"), testid).text)

    await eventually(
        lambda: row_text(first, "job-status") == row_text(second, "job-status") == "completed",
        timeout=60,
        what="live status updates",
    )
    assert row_text(second, "job-workflow") == "lora" and row_text(second, "job-progress") == "100 %"
    assert row_text(second, "job-age") == "just now"


@contextlib.asynccontextmanager
async def beating(stack: Stack, manifest: CapabilityManifest) -> AsyncIterator[None]:
    """Heartbeats for one more (pretend) worker while the block runs; forgotten after. Used inside a test body, so
    the beat task lives on the test's own event loop and is awaited to its end before the forget."""
    redis = connect(stack.settings)
    bridge = Bridge(redis, Keys(stack.settings.key_prefix), stack.settings)

    async def beat() -> None:
        while True:
            await bridge.heartbeat(manifest.model_copy(update={"ts": time.time()}))
            await asyncio.sleep(stack.settings.heartbeat_seconds)

    task = asyncio.create_task(beat())
    await asyncio.sleep(0)  # the first beat lands before the block goes on
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # no beat may land after the forget
        await bridge.forget(manifest.instance or "")
        await redis.aclose()


async def test_demo_banner_follows_capabilities(user: User, stack: Stack) -> None:
    """A worker without model paths announces demo models; the banner says so."""
    async with beating(stack, Registry().manifest("data", demo=True, instance="demo-worker")):
        await user.open("/")
        await eventually(lambda: one(user, "demo-banner").visible, what="demo banner")
        assert "outputs are noise; configure real model paths" in text_of(user, "demo-banner")


async def submit_studio(user: User, fill: Callable[[], None]) -> None:
    """The studio form with a prompt, an image, a clip and its transcript, plus what fill() adds; submitted."""
    await user.open("/")
    one(user, "workflow").value = "studio"
    user.find("Prompt").type("a red box")
    fill()
    await upload(user, "images", [("a.png", "image/png", png())])
    await upload(user, "clips", [("hello.wav", "audio/wav", wav())])
    await eventually(lambda: len(by_testid(user, "transcript-0")) == 1, what="transcript field")
    one(user, "transcript-0").value = "hello there"
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: user.back_history[-1].startswith("/jobs/"), what="job page")


async def test_studio_form_sends_clips_and_a_failure_is_shown(user: User) -> None:
    await submit_studio(
        user, lambda: user.find("Narration (spoken in the video by the trained voice)").type("Hello from the box.")
    )
    assert text_of(user, "job-workflow") == "studio"
    # prepare_assets (control) accepted the image, the clip and its transcript; the test worker has no
    # train_voice (yet), so the job fails there, and the page says where and why.
    await eventually(lambda: text_of(user, "job-status") == "failed", timeout=30, what="failed")
    assert inside(one(user, "node-prepare"), "node-status").text == "completed"
    assert inside(one(user, "node-train_voice"), "node-status").text == "failed"
    assert "train_voice" in inside(one(user, "node-train_voice"), "node-detail").text
    assert "train_voice" in text_of(user, "job-error")
    assert inside(one(user, "node-render_video"), "node-status").text == "skipped"
    assert not one(user, "cancel").visible


async def test_studio_form_writes_the_script_for_me(user: User, stack: Stack) -> None:
    """A topic instead of a narration: the job gets a generate_script node before render_video. The test stack
    has no LLM, so that node fails with the reason, and the page says so."""

    def topic() -> None:
        one(user, "topic").value = "a red box goes to sea"

    await submit_studio(user, topic)
    job = client(stack.control.url).get(f"/api/jobs/{user.back_history[-1].rsplit('/', 1)[1]}").json()
    nodes = {n["id"]: n for n in job["graph"]["nodes"]}
    assert nodes["generate_script"]["params"]["prompt"] == "a red box goes to sea"
    assert {"from": "generate_script", "to": "render_video"} in job["graph"]["edges"]
    assert job["graph"]["context"]["narration"] is None
    script = one(user, "node-generate_script")
    await eventually(lambda: inside(script, "node-status").text == "failed", timeout=60, what="no LLM: failed")
    assert "cannot answer" in inside(script, "node-detail").text


async def test_cancel_button_stops_a_running_job(user: User, stack: Stack) -> None:
    job_id = submit_lora(stack.control.url, [png()], {**LORA_OPTIONS, "steps": 2000})
    await user.open(f"/jobs/{job_id}")
    train = one(user, "node-train_lora")
    await eventually(lambda: "step" in inside(train, "node-detail").text, timeout=30, what="training started")
    user.find(kind=ui.button, content="Cancel").click()
    await user.should_see("Cancel requested: the job stops within seconds.")
    await eventually(lambda: text_of(user, "job-status") == "canceled", timeout=30, what="canceled")
    assert inside(train, "node-status").text == "canceled"
    assert not one(user, "cancel").visible


async def test_form_starts_from_the_workers_recommendation_and_estimates_as_options_change(
    user: User, stack: Stack
) -> None:
    api = client(stack.control.url)
    await eventually(
        lambda: api.get("/api/capabilities").json()["workersAlive"] == 1, timeout=60, what="worker heartbeat"
    )
    await user.open("/")
    # The page's worker (CPU, demo models) recommends a short 64 px job, not the service's 512 px / 500 steps.
    assert one(user, "opt-resolution").value == 64
    assert 0 < one(user, "opt-steps").value < 500
    recommendation = text_of(user, "recommendation")
    assert recommendation.startswith("Recommended by the alive workers (1 worker: cpu, fp32, demo models): 64 px")
    estimate = text_of(user, "estimate")
    assert estimate.startswith("Estimated duration: about ") and "longer than" not in estimate
    one(user, "opt-steps").value = 1000  # the recommended cadence (four samples) follows the steps...
    await eventually(lambda: one(user, "opt-sampleEvery").value == 250, what="preview cadence follows steps")
    one(user, "opt-sampleEvery").value = 7  # ...until the user picks their own
    one(user, "opt-steps").value = 2000
    await eventually(lambda: "about" in text_of(user, "estimate") and one(user, "opt-steps").value == 2000)
    assert one(user, "opt-sampleEvery").value == 7
    one(user, "opt-steps").value = 100_000
    one(user, "opt-resolution").value = 512
    await eventually(lambda: "longer than the 30 min this deployment expects" in text_of(user, "estimate"))
    assert text_of(user, "estimate") != estimate


async def test_an_untouched_form_follows_a_slower_worker_that_joins(user: User, stack: Stack) -> None:
    api = client(stack.control.url)
    await eventually(
        lambda: api.get("/api/capabilities").json()["workersAlive"] == 1, timeout=60, what="worker heartbeat"
    )
    await user.open("/")
    first = one(user, "opt-steps").value
    # A CPU worker with the demo models that measured 5 s per 64 px step joins: the slowest alive worker now.
    slow = Registry().merge(fake_lora.registry).manifest("data", demo=True, instance="slow-worker", device="cpu")
    slow.step_seconds = [StepSeconds(service="train_lora", resolution=64, seconds=5.0)]
    slow.recommended = Worker.of(slow).recommend()
    async with beating(stack, slow):
        expected = slow.recommended["train_lora"]["steps"]
        assert expected < first
        await eventually(lambda: one(user, "opt-steps").value == expected, timeout=30, what="form follows")
        assert "2 workers" in text_of(user, "recommendation")

"""The web UI in headless Chromium against real control, worker and frontend processes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from infra.dev.devstack import wait_until
from tests.browser.conftest import UiStack
from tests.support.api import client
from tests.support.media import png
from tests.support.ui import API_KEY, LORA_OPTIONS, submit_lora

pytestmark = pytest.mark.browser

JOB_TIMEOUT = 120_000  # ms


def write_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"photo-{i}.png"
        path.write_bytes(png((96, 80), (60 * i, 120, 200)))
        paths.append(path)
    return paths


def fill_lora_form(page: Page, files: list[Path], steps: int | None = None) -> None:
    page.goto("/")
    expect(page.get_by_test_id("link-online")).to_be_visible()
    page.get_by_test_id("images").locator("input[type=file]").set_input_files(files)
    expect(page.get_by_test_id("images-summary")).to_have_text(re.compile(rf"^{len(files)} images? ready"))
    page.get_by_label("Prompt").fill("a photo of sks box")
    page.get_by_test_id("advanced").get_by_text("Advanced options").click()
    options = {**LORA_OPTIONS, **({"steps": steps} if steps else {})}
    labels = {"steps": "Training steps", "resolution": "Resolution", "sampleEvery": "Preview every"}
    for wire, value in options.items():
        page.get_by_label(labels[wire]).fill(str(value))


def test_lora_job_from_upload_to_download(page: Page, ui_stack: UiStack, tmp_path: Path, output_dir: Path) -> None:
    fill_lora_form(page, write_images(tmp_path, 3))
    page.screenshot(path=output_dir / "new-job-1280.png", full_page=True, animations="disabled")
    page.get_by_test_id("submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[A-Za-z0-9_-]+$"))
    job_id = page.url.rsplit("/", 1)[-1]

    overall = page.get_by_test_id("overall-progress")
    expect(page.get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_TIMEOUT)
    expect(page.get_by_test_id("overall-percent")).to_have_text("100 %")
    expect(overall).to_have_attribute("aria-valuenow", "1")
    train = page.get_by_test_id("node-train_lora")
    expect(train.get_by_test_id("node-plane")).to_have_text("data plane")
    expect(train.get_by_test_id("node-status")).to_have_text("completed")
    steps = LORA_OPTIONS["steps"]
    expect(train.get_by_test_id("node-detail")).to_contain_text(f"step {steps}/{steps}")
    expect(page.get_by_test_id("loss-chart").locator("canvas").first).to_be_visible()

    # At least one preview really rendered (bytes came through the UI server's /files route).
    expect(page.get_by_test_id("preview").first).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=preview]')].some(i => i.complete && i.naturalWidth > 0)"
    )

    lora = page.get_by_test_id("artifact").filter(has_text="pytorch_lora_weights.safetensors")
    expect(lora).to_have_count(1)
    sha = lora.get_by_test_id("artifact-sha256").inner_text().removeprefix("sha256 ").strip()
    with page.expect_download() as download:
        lora.get_by_test_id("download").click()
    assert download.value.suggested_filename == "pytorch_lora_weights.safetensors"
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == sha

    page.get_by_test_id("preview").first.click()
    expect(page.get_by_test_id("viewer-image")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("viewer-image")).to_be_hidden()

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=output_dir / "job-1280.png", full_page=True, animations="disabled")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_test_id("overall-progress")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling at 390 px"
    page.screenshot(path=output_dir / "job-390.png", full_page=True, animations="disabled")

    page.get_by_test_id("nav-jobs").click()
    row = page.get_by_test_id(f"job-{job_id}")
    expect(row.get_by_test_id("job-status")).to_have_text("completed")
    expect(row.get_by_test_id("job-progress")).to_have_text("100 %")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=output_dir / "jobs-390.png", full_page=True, animations="disabled")


def test_text_file_named_png_shows_the_servers_415(page: Page, tmp_path: Path, output_dir: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture\n")
    fill_lora_form(page, [fake])
    page.get_by_test_id("submit").click()
    error = page.get_by_test_id("submit-error")
    expect(error).to_contain_text("images[0] ('notes.png') is not PNG, JPEG or WebP")
    expect(error).to_contain_text("415 unsupported_media_type")
    expect(page).to_have_url(re.compile(r"/$"))
    page.screenshot(path=output_dir / "new-job-415-1280.png", full_page=True, animations="disabled")


def test_control_restart_during_a_job(page: Page, ui_stack: UiStack) -> None:
    steps = 10
    options = {**LORA_OPTIONS, "steps": steps, "sampleEvery": 0}  # no previews: long enough to see it train
    job_id = submit_lora(ui_stack.control.url, [png(), png(color=(0, 200, 0))], options)
    page.goto(f"/jobs/{job_id}")
    train = page.get_by_test_id("node-train_lora")
    # While it runs, the node says what it is doing (the phase of its progress events) next to the step.
    expect(train.get_by_test_id("node-detail")).to_contain_text(re.compile(r"training · step"), timeout=JOB_TIMEOUT)
    expect(page.get_by_test_id("link-online")).to_be_visible()

    ui_stack.control.kill()
    expect(page.get_by_test_id("link-offline")).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("link-online")).to_be_hidden()
    ui_stack.control.start()
    expect(page.get_by_test_id("link-online")).to_be_visible(timeout=15_000)

    expect(page.get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_TIMEOUT)
    expect(page.get_by_test_id("overall-percent")).to_have_text("100 %")
    expect(train.get_by_test_id("node-detail")).to_contain_text(f"step {steps}/{steps}")
    # Caught up by replay, without a reload and without repeats: log lines carry strictly increasing seqs.
    lines = page.get_by_test_id("log").inner_text().splitlines()
    seqs = [int(m.group(1)) for line in lines if (m := re.match(r"#(\d+) ", line))]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 6, lines


def test_form_shows_the_alive_workers_recommendation_and_an_estimate(
    page: Page, ui_stack: UiStack, tmp_path: Path, output_dir: Path
) -> None:
    """The stack's worker runs the demo models on this CPU: the form starts at its short 64 px job, not at the
    service's 512 px / 500 steps, and estimates it; a long job is flagged before it is started."""
    api = client(ui_stack.control.url, API_KEY)
    wait_until(lambda: api.get("/api/capabilities").json()["workersAlive"] == 1, 30, "worker heartbeat")
    caps = api.get("/api/capabilities").json()
    lora = caps["recommended"]["train_lora"]
    assert lora["resolution"] == 64

    page.goto("/")
    expect(page.get_by_test_id("link-online")).to_be_visible()
    page.get_by_test_id("advanced").get_by_text("Advanced options").click()
    expect(page.get_by_label("Training steps")).to_have_value(str(lora["steps"]))
    expect(page.get_by_label("Resolution")).to_have_value("64")
    expect(page.get_by_label("Preview every")).to_have_value(str(lora["sampleEvery"]))
    expect(page.get_by_test_id("recommendation")).to_contain_text("cpu, fp32, demo models): 64 px")
    estimate = page.get_by_test_id("estimate")
    expect(estimate).to_have_text(re.compile(r"^Estimated duration: about \d+ (s|min) on the alive workers"))
    expect(estimate).not_to_contain_text("longer than")
    page.get_by_test_id("images").locator("input[type=file]").set_input_files(write_images(tmp_path, 2))
    expect(page.get_by_test_id("images-summary")).to_have_text(re.compile(r"^2 images ready"))
    page.screenshot(path=output_dir / "new-job-estimate-1280.png", full_page=True, animations="disabled")

    page.get_by_label("Training steps").fill("20000")
    page.get_by_label("Resolution").fill("512")
    expect(estimate).to_contain_text("longer than the 30 min this deployment expects")
    expect(page.get_by_label("Resolution")).to_have_value("512")  # the user's choice stays

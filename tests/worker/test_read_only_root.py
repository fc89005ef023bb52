"""The planes and the UI run with the root filesystem read-only, as the Kubernetes manifests start them
(readOnlyRootFilesystem, writable /tmp, infra/k8s/base): a worker trains a LoRA to the end, control and the UI
answer. Each process runs in a mount namespace of its own in which only /tmp (and /dev, /proc) can be written."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from common.settings import Settings
from common.storage import Storage
from tests.support.jobs import Harness, graph
from tests.support.media import put_images
from tests.support.processes import ROOT, Frontend, Plane

pytestmark = pytest.mark.ml

#: / read-only in a private mount namespace, /tmp left writable (the pods' emptyDir), then the command.
READ_ONLY_ROOT = 'mount --make-rprivate / && mount --bind /tmp /tmp && mount -o remount,bind,ro / && exec "$@"'
#: The environment the manifests give the containers for a read-only root.
POD_ENV = {"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def launcher() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a read-only mount namespace")
    launch = ("unshare", "--mount", "sh", "-c", READ_ONLY_ROOT, "sh")
    probe = subprocess.run([*launch, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN: the environment, not Biplane
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()}")
    return launch


@pytest.fixture
def planes(tmp_path: Path, launcher: tuple[str, ...]) -> Iterator[Callable[[str, Settings], Plane]]:
    started: list[Plane] = []

    def start(module: str, settings: Settings) -> Plane:
        plane = Plane(module, settings, tmp_path, **POD_ENV)
        plane.launcher = launcher
        started.append(plane.start())
        return plane

    yield start
    for plane in started:
        plane.stop()


def test_the_namespace_is_read_only_but_tmp(tmp_path: Path, launcher: tuple[str, ...]) -> None:
    probe = ROOT / "read-only-probe"
    try:
        refused = subprocess.run([*launcher, "touch", str(probe)], capture_output=True, text=True, check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused.stderr
        assert not probe.exists()
    finally:
        probe.unlink(missing_ok=True)
    allowed = subprocess.run([*launcher, "touch", str(tmp_path / "x")], capture_output=True, check=False)
    assert allowed.returncode == 0 and (tmp_path / "x").exists()


async def test_planes_and_ui_run_on_a_read_only_root(
    redis: Redis,
    ml_settings: Settings,
    storage: Storage,
    planes: Callable[[str, Settings], Plane],
    launcher: tuple[str, ...],
    tmp_path: Path,
) -> None:
    control = planes("control", ml_settings)
    planes("worker", ml_settings)
    h = Harness(redis, ml_settings)
    images = put_images(storage, await h.donor(), n=2, size=64)
    params = {"resolution": 32, "steps": 2, "sampleEvery": 0, "sampleSteps": 1}
    doc = graph([("n", "train_lora", "data", params)], [])
    job = await h.submit(doc.model_copy(update={"context": {"images": images, "prompt": "a photo of sks"}}))
    final = await h.wait_final(job.job_id, timeout=180)
    assert final.status == "completed", final.error
    assert [k for k in storage.list(f"jobs/{job.job_id}/") if k.endswith(".safetensors")]

    ui = Frontend(ml_settings.model_copy(update={"api_key": SecretStr("test-key-1")}), control.url, tmp_path)
    ui.launcher, ui.cwd = launcher, ROOT  # the image's working directory is read-only too
    ui.env.update(POD_ENV)
    try:
        ui.start()  # answers 200 on / (a page that asks control for the services)
    finally:
        ui.stop()

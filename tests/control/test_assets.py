"""prepare_assets and publish_artifacts with real S3: decoding, orientation, limits, manifest."""

from __future__ import annotations

import io
import json
import threading

import pytest
from PIL import Image

from common.context import TaskContext
from common.errors import TaskInputError
from common.params import PrepareAssetsParams, PublishArtifactsParams
from common.settings import Settings
from common.storage import Storage
from control.tasks.assets import prepare_assets, prepare_image
from control.tasks.publish import publish_artifacts
from tests.support.media import bomb_png, wav


def ctx(settings: Settings, storage: Storage, context: dict, events: list) -> TaskContext:
    return TaskContext(
        job_id="job1",
        node_id="prepare",
        service="prepare_assets",
        attempt=1,
        settings=settings,
        storage=storage,
        job_inputs=context,
        inputs={},
        emit=events.append,
        cancel=threading.Event(),
    )


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG (left half red) whose EXIF says: rotate 90 degrees clockwise to display (orientation 6)."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def test_exif_orientation_crop_and_resize() -> None:
    out = Image.open(io.BytesIO(prepare_image(exif_rotated_jpeg(), 32, 10**6)))
    assert out.size == (32, 32) and out.mode == "RGB" and out.format == "PNG"
    # After applying orientation 6 the red half is on top; the centre crop keeps red above blue.
    top, bottom = out.getpixel((16, 2)), out.getpixel((16, 29))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_decompression_bomb_and_garbage_are_input_errors() -> None:
    with pytest.raises(TaskInputError, match="limit"):
        prepare_image(bomb_png(), 64, 40_000_000)
    with pytest.raises(TaskInputError, match="decode"):
        prepare_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, 64, 10**6)


def test_prepare_assets_and_publish_manifest(settings: Settings, storage: Storage) -> None:
    storage.put_bytes("jobs/job1/inputs/images/000.jpg", exif_rotated_jpeg())
    storage.put_bytes("jobs/job1/inputs/images/001.png", bomb_png(40))
    storage.put_bytes("jobs/job1/inputs/clips/000.wav", wav(0.5, 22050))
    events: list = []
    context = {
        "prompt": "a cat",
        "narration": "hello",
        "images": ["jobs/job1/inputs/images/000.jpg", "jobs/job1/inputs/images/001.png"],
        "clips": ["jobs/job1/inputs/clips/000.wav"],
        "transcripts": ["hello there"],
    }
    with pytest.raises(TaskInputError, match=r"images\[1\]"):  # 40x40 claims, broken data
        prepare_assets(ctx(settings, storage, context, events), PrepareAssetsParams(resolution=48))

    storage.put_bytes("jobs/job1/inputs/images/001.png", Image_png())
    events.clear()
    out = prepare_assets(ctx(settings, storage, context, events), PrepareAssetsParams(resolution=48))
    assert out["images"] == ["jobs/job1/prepare/images/000.png", "jobs/job1/prepare/images/001.png"]
    assert Image.open(io.BytesIO(storage.get_bytes(out["images"][1]))).size == (48, 48)
    assert out["transcripts"] == ["hello there"] and abs(out["clipSeconds"][0] - 0.5) < 0.01
    assert [e["step"] for e in events if e["kind"] == "progress"] == [1, 2, 3]

    storage.put_bytes("jobs/job1/inputs/clips/000.wav", b"RIFF\0\0\0\0WAVEnope")
    with pytest.raises(TaskInputError, match=r"clips\[0\]: audio does not decode"):
        prepare_assets(ctx(settings, storage, context, []), PrepareAssetsParams(resolution=48))
    with pytest.raises(TaskInputError, match="transcript"):
        prepare_assets(ctx(settings, storage, {**context, "transcripts": [" "]}, []), PrepareAssetsParams())

    storage.put_bytes("jobs/job1/train/checkpoints/step-1.pt", b"state")
    storage.put_bytes("jobs/job1/train/lora.safetensors", b"weights")
    published = publish_artifacts(ctx(settings, storage, {}, events), PublishArtifactsParams())
    manifest = json.loads(storage.get_bytes("jobs/job1/manifest.json"))
    names = [a["name"] for a in manifest["artifacts"]]
    assert names == ["prepare/images/000.png", "prepare/images/001.png", "train/lora.safetensors"]
    assert published["artifacts"] == 3
    lora = next(a for a in manifest["artifacts"] if a["name"] == "train/lora.safetensors")
    assert lora["sha256"] == storage.stat("jobs/job1/train/lora.safetensors").sha256 and lora["size"] == 7


def Image_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (70, 50), (10, 200, 10)).save(out, "PNG")
    return out.getvalue()

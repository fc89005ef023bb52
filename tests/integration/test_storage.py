"""Storage against the real SeaweedFS S3 of the session fixture."""

import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from common.errors import NotFound, StorageError
from common.settings import Settings
from common.storage import PART_SIZE, Storage


def test_round_trip_and_presigned_get(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    meta = storage.put_bytes("jobs/j1/node/a.bin", data, "application/x-test")
    assert meta.sha256 == hashlib.sha256(data).hexdigest() and meta.size == len(data)
    assert storage.get_bytes("jobs/j1/node/a.bin") == data
    stat = storage.stat("jobs/j1/node/a.bin")
    assert (stat.sha256, stat.size, stat.content_type) == (meta.sha256, len(data), "application/x-test")

    url = storage.presigned_get("jobs/j1/node/a.bin")
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == data
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403

    path = tmp_path / "f.png"
    path.write_bytes(b"\x89PNG fake")
    assert storage.put_file("jobs/j1/node/f.png", path).content_type == "image/png"
    assert sorted(storage.list("jobs/j1/")) == ["jobs/j1/node/a.bin", "jobs/j1/node/f.png"]
    assert storage.download("jobs/j1/node/f.png", tmp_path / "out" / "f.png").read_bytes() == b"\x89PNG fake"

    storage.delete("jobs/j1/node/a.bin")
    with pytest.raises(NotFound):
        storage.stat("jobs/j1/node/a.bin")


def test_streamed_multipart_upload_records_sha256(storage: Storage) -> None:
    data = os.urandom(PART_SIZE * 2 + 123)
    meta = storage.put_stream("jobs/j2/big.bin", io.BytesIO(data))
    assert meta.size == len(data) and meta.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.stat("jobs/j2/big.bin").sha256 == meta.sha256
    with pytest.raises(StorageError, match="exceeds"):
        storage.put_stream("jobs/j2/too-big.bin", io.BytesIO(data), limit=PART_SIZE)


def test_wrong_secret_is_a_clear_error(settings: Settings) -> None:
    bad = Storage(settings.model_copy(update={"s3_secret_key": SecretStr("nope-nope-nope")}))
    with pytest.raises(StorageError, match="S3"):
        bad.put_bytes("x", b"1")


def test_unreachable_endpoint_fails_after_the_retry_budget(settings: Settings) -> None:
    dead = Storage(settings.model_copy(update={"s3_endpoint": "127.0.0.1:9", "s3_retry_seconds": 1}))
    assert dead.ping() is False
    with pytest.raises(StorageError, match="unreachable"):
        dead.stat("x")

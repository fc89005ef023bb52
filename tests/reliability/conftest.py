"""Reliability fixtures: an S3 server of the test's own, to stop and start under live planes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import Settings
from infra.dev.devstack import S3Server


@pytest.fixture
def own_s3(settings: Settings, tmp_path: Path) -> Iterator[tuple[S3Server, Settings]]:
    """A private S3 server (same credentials) and the test's settings pointed at it; stopped after the test."""
    s3 = S3Server(tmp_path / "s3", secret_key=settings.s3_secret_key.get_secret_value()).start()
    try:
        yield s3, settings.model_copy(update={"s3_endpoint": s3.endpoint, "bucket": s3.bucket})
    finally:
        s3.stop()

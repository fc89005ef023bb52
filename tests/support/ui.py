"""What the UI, CLI and REST tests of a LoRA job share: the UI's key, short job options, the worker, a submit."""

from __future__ import annotations

import json
from typing import Any

import httpx

from common.settings import Settings
from infra.dev.devstack import RedisServer, S3Server
from tests.support.processes import make_settings

API_KEY = "test-key-1"
#: Options of a short real lora job (demo model).
LORA_OPTIONS: dict[str, Any] = {"steps": 3, "resolution": 64, "sampleEvery": 1}


def ui_settings(redis_server: RedisServer, s3_server: S3Server) -> Settings:
    return make_settings(redis_server, s3_server, prefix="ui", api_keys=f"{API_KEY},test-key-2", api_key=API_KEY)


def submit_lora(control_url: str, images: list[bytes], options: dict[str, Any], prompt: str = "a red box") -> str:
    """Submit a lora job over REST as the UI's key (for tests that start on the job page)."""
    files = [("images", (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]
    data = {"prompt": prompt, "workflow": "lora", "options": json.dumps(options)}
    resp = httpx.post(
        f"{control_url}/api/train", data=data, files=files, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["jobId"])

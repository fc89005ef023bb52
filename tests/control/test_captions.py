"""Per-image captions on /api/train (a `captions` field or `<image>.txt` files); bad ones are 422s with pointers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.storage import Storage
from tests.support.api import client
from tests.support.media import png
from tests.support.processes import ROOT, Plane

Files = list[tuple[str, tuple[str, bytes, str]]]


def images(*names: str) -> Files:
    return [("images", (n, png(color=(10 * i, 90, 200)), "image/png")) for i, n in enumerate(names)]


def caption_file(name: str, text: str | bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("images", (name, text.encode() if isinstance(text, str) else text, "text/plain"))


def context_of(api: Any, job_id: str) -> dict[str, Any]:
    return dict(api.get(f"/api/jobs/{job_id}").json()["graph"]["context"])


def test_captions_reach_the_job_context(control: Plane) -> None:
    api = client(control.url)
    r = api.post(
        "/api/train",
        data={"prompt": "a photo of sks", "captions": json.dumps(["a red sks", ""])},
        files=images("a.png", "b.png"),
    )
    assert r.status_code == 202, r.text
    assert context_of(api, r.json()["jobId"])["captions"] == ["a red sks", ""]

    # repeated fields, one per image
    r = api.post("/api/train", data={"prompt": "p", "captions": ["one", "two"]}, files=images("a.png", "b.png"))
    assert r.status_code == 202, r.text
    assert context_of(api, r.json()["jobId"])["captions"] == ["one", "two"]

    # kohya layout: b.txt beside b.png (several lines of tags become one line); a.png has none -> the prompt
    files = [*images("a.png", "b.png"), caption_file("b.txt", "sks dog,\nsitting,  grass\n")]
    r = api.post("/api/train", data={"prompt": "p"}, files=files)
    assert r.status_code == 202, r.text
    ctx = context_of(api, r.json()["jobId"])
    assert ctx["captions"] == ["", "sks dog, sitting, grass"] and len(ctx["images"]) == 2

    r = api.post("/api/train", data={"prompt": "p"}, files=images("a.png"))
    assert "captions" not in context_of(api, r.json()["jobId"])


def test_bad_captions_are_422_with_the_pointer_of_the_offending_one(control: Plane, storage: Storage) -> None:
    api = client(control.url)

    def refused(data: dict[str, Any], files: Files) -> tuple[int, str, str]:
        r = api.post("/api/train", data={"prompt": "p", **data}, files=files)
        body = r.json()
        return r.status_code, body["code"], body.get("pointer", "")

    two = images("a.png", "b.png")
    assert refused({"captions": json.dumps(["only one"])}, two) == (422, "invalid_caption", "/captions")
    assert refused({"captions": json.dumps(["ok", 7])}, two) == (422, "invalid_caption", "/captions/1")
    assert refused({"captions": json.dumps(["ok", "x" * 1001])}, two) == (422, "invalid_caption", "/captions/1")
    assert refused({"captions": json.dumps({"a": "b"})}, two)[2] == "/captions"
    assert refused({"captions": "[not json"}, two)[0] == 422
    assert refused({"captions": ["a", "b", "c"]}, two) == (422, "invalid_caption", "/captions")
    files = [*two, ("captions", ("c.txt", b"as a file", "text/plain"))]
    assert refused({}, files)[1:] == ("invalid_caption", "/captions/0")
    # caption files: no image of that name (part 2 of `images`), not UTF-8, too long, and both ways at once
    assert refused({}, [*two, caption_file("c.txt", "stray")]) == (422, "invalid_caption", "/images/2")
    assert refused({}, [*two, caption_file("a.txt", b"\xff\xfe\xfa")]) == (422, "invalid_caption", "/images/2")
    assert refused({}, [caption_file("b.txt", "x" * 5000), *two])[2] == "/images/0"
    both = refused({"captions": json.dumps(["x", "y"])}, [*two, caption_file("a.txt", "z")])
    assert both == (422, "invalid_caption", "/captions")
    # a caption file alone is not an image
    assert refused({}, [caption_file("a.txt", "z")])[2] == "/images"
    assert list(storage.list("jobs/")) == [], "refused requests stored nothing"


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIPLANE_")}
    env |= {"BIPLANE_URL": url, "BIPLANE_API_KEY": "test-key-1", "COLUMNS": "200"}
    command = [str(Path(sys.executable).parent / "biplane"), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_client_and_cli_send_captions(control: Plane, tmp_path: Path) -> None:
    from client.api import Client, RemoteError

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b"):
        (photos / f"{name}.png").write_bytes(png())
    (photos / "b.txt").write_text("sks on a beach\n")
    api = client(control.url)

    done = cli(control.url, "--json", "train", "--images", str(photos), "--prompt", "sks")
    assert done.returncode == 0, done.stderr
    assert context_of(api, json.loads(done.stdout)["jobId"])["captions"] == ["", "sks on a beach"]

    c = Client(control.url, "test-key-1")
    pngs = [photos / "a.png", photos / "b.png"]
    accepted = c.post_train(pngs, "sks", captions=["left", "right"])
    assert context_of(api, accepted["jobId"])["captions"] == ["left", "right"]
    with pytest.raises(RemoteError) as err:
        c.post_train(pngs, "sks", captions=["only one"])
    assert (err.value.status, err.value.code, err.value.pointer) == (422, "invalid_caption", "/captions")

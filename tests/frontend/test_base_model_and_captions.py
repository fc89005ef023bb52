"""The new-job form: a base model chosen from the deployment's list and kohya caption files reach the job."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing import User

from common.storage import Storage
from tests.frontend.conftest import Stack
from tests.support.api import client
from tests.support.jobs import eventually
from tests.support.media import png


def one(user: User, testid: str) -> Any:
    assert user.client is not None
    found = [el for el in user.client.elements.values() if el.props.get("data-testid") == testid]
    assert len(found) == 1, f"{len(found)} elements with data-testid={testid}"
    return found[0]


async def test_base_model_and_caption_files_are_sent(user: User, stack: Stack) -> None:
    await user.open("/")
    select = one(user, "base-model")
    assert select.visible and select.value == "sd15"  # the default: the first of the deployment's base models
    assert set(select.options) == {"sd15", "sdxl"}
    select.value = "sdxl"
    user.find("Prompt").type("a red box")
    a, b = png(color=(0, 0, 200)), png(color=(200, 0, 0))
    files = [("a.png", "image/png", a), ("b.png", "image/png", b), ("b.txt", "text/plain", b"sks box, red")]
    await one(user, "images").handle_uploads([SmallFileUpload(n, t, d) for n, t, d in files])
    await eventually(lambda: "2 images ready" in str(one(user, "images-summary").text), what="staged images")
    assert "1 with a caption file" in str(one(user, "images-summary").text)
    user.find(kind=ui.button, content="Start training").click()
    await eventually(lambda: user.back_history and user.back_history[-1].startswith("/jobs/"), what="job page")
    job_id = user.back_history[-1].rsplit("/", 1)[1]
    job = client(stack.control.url).get(f"/api/jobs/{job_id}").json()
    context = job["graph"]["context"]
    # b.txt is b.png's caption whatever order the browser's uploads finished in
    storage = Storage(stack.settings)
    by_image = {
        storage.get_bytes(key): caption for key, caption in zip(context["images"], context["captions"], strict=True)
    }
    assert by_image == {a: "", b: "sks box, red"}
    train = next(n for n in job["graph"]["nodes"] if n["service"] == "train_lora")
    assert train["params"]["baseModel"] == "sdxl"

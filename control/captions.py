"""Per-image captions of /api/train: a `captions` field (repeated or a JSON array, one per image) or kohya-style
`<image-name>.txt` files uploaded among the `images`. An empty caption falls back to the job's prompt."""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

from starlette.datastructures import FormData, UploadFile

from control.bodies import parse_json
from control.errors import ApiError

CAPTION_SUFFIX = ".txt"


def is_caption_file(value: object) -> bool:
    """A part of the `images` field that is a caption file (by its name: `<image-name>.txt`)."""
    return isinstance(value, UploadFile) and (value.filename or "").lower().endswith(CAPTION_SUFFIX)


def _bad(message: str, pointer: str) -> ApiError:
    return ApiError(422, "invalid_caption", message, pointer=pointer)


def _clean(value: str, i: int, limit: int) -> str:
    text = " ".join(value.split())  # kohya caption files often hold several lines of tags
    if len(text) > limit:
        raise _bad(f"caption {i} is longer than {limit} characters", f"/captions/{i}")
    return text


def _from_field(form: FormData, count: int, limit: int, max_depth: int) -> list[str] | None:
    values = form.getlist("captions")
    if not values:
        return None
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise _bad("captions must be text, not files", f"/captions/{i}")
    texts: list[object] = list(values)
    if len(values) == 1 and str(values[0]).lstrip().startswith("["):
        parsed = parse_json(str(values[0]), name="captions", max_depth=max_depth)
        if not isinstance(parsed, list):
            raise _bad("captions must be an array of strings", "/captions")
        texts = parsed
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise _bad(f"caption {i} must be a string", f"/captions/{i}")
    if len(texts) != count:
        raise _bad(f"send one caption per image ({count}), got {len(texts)}", "/captions")
    return [_clean(str(item), i, limit) for i, item in enumerate(texts)]


async def _from_files(form: FormData, image_names: list[str], limit: int) -> list[str] | None:
    files = [(i, v) for i, v in enumerate(form.getlist("images")) if is_caption_file(v)]
    if not files:
        return None
    stems: dict[str, list[int]] = {}
    for i, name in enumerate(image_names):
        stems.setdefault(PurePosixPath(name).stem, []).append(i)
    captions = [""] * len(image_names)
    for part, f in files:
        assert isinstance(f, UploadFile)
        name = f.filename or ""
        owners = stems.get(PurePosixPath(name).stem)
        if not owners:
            raise _bad(f"caption file {name[:100]!r} has no image of the same name", f"/images/{part}")
        raw = await asyncio.to_thread(f.file.read, limit * 4 + 1)  # UTF-8: at most 4 bytes a character
        if len(raw) > limit * 4:
            raise _bad(f"caption file {name[:100]!r} is longer than {limit} characters", f"/images/{part}")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise _bad(f"caption file {name[:100]!r} is not UTF-8 text", f"/images/{part}") from e
        for i in owners:
            captions[i] = _clean(text, i, limit)
    return captions


async def captions(form: FormData, image_names: list[str], limit: int, max_depth: int) -> list[str] | None:
    """One caption per image ("" = the prompt), or None when none were sent. Errors name the offending index."""
    field = _from_field(form, len(image_names), limit, max_depth)
    files = await _from_files(form, image_names, limit)
    if field is not None and files is not None:
        raise _bad("send captions either as the captions field or as .txt files, not both", "/captions")
    return field if field is not None else files

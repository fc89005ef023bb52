"""Multipart uploads: per-file limits, content sniffing, streaming to S3, cleanup.

Starlette spools each file part to a temp file past 1 MiB, so no upload sits whole in memory; parts go
to S3 from there in 5 MiB multipart chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from common.settings import Settings
from common.storage import Storage
from control.captions import is_caption_file
from control.errors import ApiError

Kind = Literal["image", "audio"]


def sniff(head: bytes, kind: Kind) -> tuple[str, str] | None:
    """(extension, content type) decided by the bytes, never by the file name."""
    if kind == "image":
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return "png", "image/png"
        if head.startswith(b"\xff\xd8\xff"):
            return "jpg", "image/jpeg"
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return "webp", "image/webp"
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav", "audio/wav"
    if head.startswith(b"fLaC"):
        return "flac", "audio/flac"
    if head.startswith(b"OggS"):
        return "ogg", "audio/ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3", "audio/mpeg"
    return None


@dataclass
class Checked:
    """An upload that passed the checks, still in its spool file."""

    file: UploadFile
    ext: str
    content_type: str
    size: int
    sha256: str


def _check_image_header(f: UploadFile, what: str, max_pixels: int) -> None:
    """Read only the header: reject images that cannot be parsed or claim too many pixels (bombs)."""
    try:
        with Image.open(f.file) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:
        raise ApiError(413, "too_large", f"{what} claims too many pixels (decompression bomb)") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ApiError(415, "unsupported_media_type", f"{what} is not a readable image: {e}") from e
    finally:
        f.file.seek(0)
    if width * height > max_pixels:
        raise ApiError(413, "too_large", f"{what} is {width}x{height}; the limit is {max_pixels} pixels")


def _digest(f: UploadFile) -> tuple[int, str]:
    f.file.seek(0)
    sha, size = hashlib.sha256(), 0
    while chunk := f.file.read(1024 * 1024):
        sha.update(chunk)
        size += len(chunk)
    f.file.seek(0)
    return size, sha.hexdigest()


async def check_files(
    form: FormData,
    field: str,
    kind: Kind,
    settings: Settings,
    *,
    minimum: int,
    maximum: int,
    budget: list[int],
) -> list[Checked]:
    """Validate the files of one form field; budget[0] is the total bytes left for this request.

    Caption files (`<image-name>.txt`) among images are not images: control/captions.py reads them."""
    parts = [v for v in form.getlist(field) if not (kind == "image" and is_caption_file(v))]
    files = [v for v in parts if isinstance(v, UploadFile)]
    if any(not isinstance(v, UploadFile) for v in parts):
        raise ApiError(422, "invalid_request", f"{field} must be files", pointer=f"/{field}")
    if not minimum <= len(files) <= maximum:
        raise ApiError(
            422, "invalid_request", f"{field}: send {minimum} to {maximum} files, got {len(files)}", pointer=f"/{field}"
        )
    checked = []
    for i, f in enumerate(files):
        name = f.filename or ""
        if "/" in name or "\\" in name or ".." in name or "\0" in name or len(name) > 255:
            raise ApiError(422, "invalid_request", f"{field}[{i}] has an unsafe file name", pointer=f"/{field}/{i}")
        size, sha = await asyncio.to_thread(_digest, f)
        if size > settings.max_upload_file_bytes:
            raise ApiError(
                413,
                "too_large",
                f"{field}[{i}] is {size} bytes; the limit is {settings.max_upload_file_bytes}",
                pointer=f"/{field}/{i}",
            )
        budget[0] -= size
        if budget[0] < 0:
            raise ApiError(413, "too_large", f"uploads exceed {settings.max_upload_total_bytes} bytes in total")
        head = await asyncio.to_thread(f.file.read, 16)
        f.file.seek(0)
        found = sniff(head, kind)
        if found is None:
            allowed = "PNG, JPEG or WebP" if kind == "image" else "WAV, FLAC, OGG or MP3"
            raise ApiError(
                415,
                "unsupported_media_type",
                f"{field}[{i}] ({(f.filename or '?')[:100]!r}) is not {allowed}",
                pointer=f"/{field}/{i}",
            )
        if size == 0:
            raise ApiError(422, "invalid_request", f"{field}[{i}] is empty", pointer=f"/{field}/{i}")
        if kind == "image":
            await asyncio.to_thread(_check_image_header, f, f"{field}[{i}]", settings.max_image_pixels)
        checked.append(Checked(f, found[0], found[1], size, sha))
    return checked


async def store_files(storage: Storage, files: list[tuple[str, Checked]]) -> None:
    """Stream each checked file to its key; on any failure delete what went up, then re-raise."""
    done: list[str] = []
    try:
        for key, c in files:
            c.file.file.seek(0)
            await asyncio.to_thread(storage.put_stream, key, c.file.file, c.content_type, c.size)
            done.append(key)
    except BaseException:
        await delete_keys(storage, done)
        raise


async def delete_keys(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        await asyncio.to_thread(storage.delete, key)


async def read_form(request: Request, settings: Settings) -> FormData:
    max_files = 2 * settings.max_images + settings.max_clips  # an image may come with its caption file
    try:
        return await request.form(max_files=max_files, max_fields=200, max_part_size=64 * 1024)
    except ApiError:
        raise
    except Exception as e:  # python-multipart / starlette parse errors
        status = getattr(e, "status_code", 400)  # 413 / 408 from the body guard (control/bodies.py)
        code = {413: "too_large", 408: "timeout"}.get(status, "bad_request")
        raise ApiError(
            status if code != "bad_request" else 400,
            code,
            f"could not read the multipart form: {getattr(e, 'detail', e)}",
        ) from e

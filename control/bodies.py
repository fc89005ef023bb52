"""Request bodies: authenticated and bounded before they are read, JSON bounded in depth before it is parsed.

`BodyGuard` is the outermost gate of every HTTP request that carries a body: an `/api/` request without a
valid key is answered 401 before one byte of its body is read, a declared length over the route's limit 413
at once, and a streamed body is counted (413 past the limit) and must keep arriving (408 when it stalls).
Uploads (`/api/train`, `/api/voice`) get the upload budget; every other body `max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.settings import Settings
from control.auth import authenticate, bearer
from control.errors import ApiError, error_body

#: Room for form fields and multipart framing on top of the file bytes.
FORM_OVERHEAD = 1024 * 1024
UPLOAD_PATHS = ("/api/train", "/api/voice")

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than limit; linear passes in C, no recursion, no parse.
    Malformed text is left to the parser (False)."""
    shape = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shape, removed = _PAIR.subn(b"", shape)
        if not shape or not removed:
            return False
    return bool(shape)


def parse_json(text: str, *, name: str, max_depth: int) -> Any:
    """A JSON form field or body, refused with 422 when it is not JSON or nests deeper than max_depth."""
    if too_deep(text.encode(), max_depth):
        raise ApiError(422, "too_deep", f"{name} nests deeper than {max_depth} levels", pointer=f"/{name}")
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError, or a number too long to convert
        raise ApiError(422, "invalid_request", f"{name} is not JSON: {e}", pointer=f"/{name}") from e


class BoundedJsonRoute(APIRoute):
    """A route whose JSON body is checked for depth before FastAPI parses and validates it."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
                limit = request.app.state.control.settings.max_json_depth
                if too_deep(await request.body(), limit):
                    raise ApiError(422, "too_deep", f"the body nests deeper than {limit} levels")
            response: Response = await handler(request)
            return response

        return bounded


class BodyGuard:
    """See the module docstring. Pure ASGI, so nothing upstream has read the body yet."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.upload_limit = settings.max_upload_total_bytes + FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and length in (None, "0"):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/api/"):
            try:
                authenticate(self.settings, bearer(headers.get("authorization"), headers.get("x-api-key")))
            except ApiError as e:
                await _answer(send, e.status, e.code, e.message, e.headers)
                return
        limit = self.upload_limit if scope["path"] in UPLOAD_PATHS else self.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            await _answer(send, 413, "too_large", f"request body exceeds {limit} bytes")
            return
        await self.app(scope, self._bounded(receive, limit), send)

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        seen = 0
        timeout = self.settings.http_body_timeout_seconds

        async def bounded() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError as e:
                raise HTTPException(408, f"no body bytes for {timeout:g} s") from e
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # an HTTPException passes FastAPI's body parsing unchanged
                    raise HTTPException(413, f"request body exceeds {limit} bytes", headers={"connection": "close"})
            return message

        return bounded


async def _answer(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error sent before the body was read; `connection: close` so the rest is never read either."""
    body = json.dumps(error_body(code, message)).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Maps every error to one JSON shape: {"code", "message", "pointer"?, "details"?} with a stable code."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import BiplaneError, StorageError

log = structlog.get_logger(__name__)


class ApiError(BiplaneError):
    """An HTTP answer with a code: raise ApiError(413, "too_large", "...")."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        pointer: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, pointer=pointer)
        self.status, self.code, self.headers = status, code, headers


def error_body(code: str, message: str, pointer: str | None = None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if pointer is not None:
        body["pointer"] = pointer
    if details is not None:
        body["details"] = details
    return body


def unavailable(message: str) -> JSONResponse:
    """503 with Retry-After: a dependency (Redis, S3) is down; the same request may succeed later."""
    return JSONResponse(error_body("unavailable", message), 503, headers={"Retry-After": RETRY_AFTER})


def pointer_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """A JSON pointer from a pydantic error location (`("nodes", 2, "id")` -> `/nodes/2/id`)."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "/" + "/".join(parts) if parts else ""


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


#: What clients are told to wait before retrying while Redis or S3 is unreachable (seconds).
RETRY_AFTER = "5"


def install(app: FastAPI) -> None:
    @app.exception_handler(BiplaneError)
    async def domain_error(request: Request, exc: BiplaneError) -> JSONResponse:
        if isinstance(exc, StorageError):  # the detail names internal hosts: it goes to the log only
            log.warning("storage unavailable", path=request.url.path, error=exc.message)
            return unavailable("storage unavailable")
        headers = getattr(exc, "headers", None)
        return JSONResponse(error_body(exc.code, exc.message, exc.pointer), exc.status, headers=headers)

    @app.exception_handler(RedisError)
    async def redis_error(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis unavailable", path=request.url.path, error=repr(exc))
        return unavailable("the job store is unavailable; retry later")

    @app.exception_handler(RecursionError)
    async def too_deep(_: Request, exc: RecursionError) -> JSONResponse:  # a backstop to the depth checks
        return JSONResponse(error_body("too_deep", "the request nests too deeply"), 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = tuple(first.get("loc", ()))
        details = [{"pointer": pointer_of(e.get("loc", ())), "message": e.get("msg", "")} for e in errors[:20]]
        return JSONResponse(
            error_body(
                "invalid_request", f"{pointer_of(loc) or 'request'}: {first.get('msg')}", pointer_of(loc), details
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return JSONResponse(error_body("internal", "internal error"), 500)

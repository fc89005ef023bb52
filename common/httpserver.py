"""How the planes are served: uvicorn's limits taken from the settings, and a deadline on request headers.

uvicorn times out idle keep-alive connections, but a connection that trickles a request's headers is held
for as long as the client likes (slowloris). `HeaderDeadlineProtocol` closes it with a 408 when the headers
are not complete `http_header_timeout_seconds` after the connection opened (or the request's first byte
arrived), and answers 400 to headers larger than `http_max_header_bytes`. Bodies are bounded and timed by
`control.bodies.BodyGuard` on control. Entrypoints pass `server_options(settings)` to `uvicorn.run`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.settings import Settings

log = structlog.get_logger(__name__)

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderTooLarge(Exception):
    """Raised in a parser callback: uvicorn answers 400 and closes the connection."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size limit on each request's headers."""

    header_timeout = 10.0
    max_header_bytes = 64 * 1024
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a keep-alive connection's next request starts its own clock
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            raise HeaderTooLarge(f"request headers exceed {self.max_header_bytes} bytes")

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("request headers too slow; closing", client=self.client, seconds=self.header_timeout)
            self.transport.write(_TIMEOUT)
            self.transport.close()


def protocol(settings: Settings) -> type[HeaderDeadlineProtocol]:
    """The protocol class with this process's limits (uvicorn instantiates it per connection)."""
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout": settings.http_header_timeout_seconds, "max_header_bytes": settings.http_max_header_bytes},
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run keyword arguments with every HTTP limit set (docs/operations.md#security)."""
    return {
        "http": protocol(settings),
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "limit_concurrency": settings.http_max_connections,
        # A WebSocket message is read whole before the app sees it: bound it near the app's own limit.
        "ws_max_size": max(1024 * 1024, 4 * settings.ws_max_message_bytes),
    }

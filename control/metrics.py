"""Control-plane metrics: HTTP, submissions, WebSocket hub, live workers (job ids never become labels)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter("biplane_http_requests_total", "HTTP requests", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "biplane_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS_SUBMITTED = Counter("biplane_jobs_submitted_total", "Jobs accepted", ["workflow"])
WS_CLIENTS = Gauge("biplane_ws_clients", "Open WebSocket connections", multiprocess_mode="livesum")
WS_MESSAGES = Counter("biplane_ws_messages_total", "WebSocket messages", ["direction", "type"])
WS_EVENTS_OUT = WS_MESSAGES.labels("out", "event")
WS_SEND_ERRORS = Counter("biplane_ws_send_errors_total", "WebSocket sends that failed")
EVENT_DELIVERY = Histogram(
    "biplane_event_delivery_seconds",
    "Event publish to WebSocket send (a fanned-out event: once, for the last socket it was written to)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
WORKERS_ALIVE = Gauge("biplane_workers_alive", "Workers with a fresh heartbeat", multiprocess_mode="livemostrecent")


class HttpMetrics:
    """Counts requests by route template (never the raw path, which holds job ids)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            # The router leaves the matched route in the scope: label by its template, never the raw path.
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - started)

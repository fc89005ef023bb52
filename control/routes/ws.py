"""`/ws`: subscribe to jobs, get a snapshot, then every event; replay by seq after a reconnect.

Protocol (common/schemas/ws.schema.json): the client authenticates with `?token=` or a first
`{"action": "auth", "token": ...}` frame, then sends `subscribe` (`jobId`, optional `since`), `unsubscribe`
or `ping` (the original stack's `SUBSCRIBE` / `UNSUBSCRIBE` frames are aliases, answered the same way). The
server sends `ready`, `subscribed` (job snapshot + seq), `event`, `unsubscribed`, `error` (connection kept),
`heartbeat` and `pong`. Unauthenticated sockets are closed with 4401.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from redis.exceptions import RedisError

from common.errors import BiplaneError
from common.keys import MAX_SEQ
from common.models.ws_schema import ClientMessage
from control import metrics
from control.auth import authenticate
from control.deps import Control
from control.errors import ApiError
from control.wsserver import EXTENSION

log = structlog.get_logger(__name__)
router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW = 1013  #: the client does not read fast enough; it reconnects and replays
CLOSE_TRY_AGAIN = 1013  #: Redis cannot be reached now; the client reconnects and replays
OUTBOX = 10_000
#: The original stack's upper-case frames, handled as Biplane's (docs/api.md, compatibility aliases).
ALIASES = {"SUBSCRIBE": "subscribe", "UNSUBSCRIBE": "unsubscribe"}
_CLOSE = "__close__"  #: outbox sentinel: close the socket after what is queued


class Session:
    """One socket: a single writer task drains the outbox, one forwarder task per subscription."""

    def __init__(self, ws: WebSocket, c: Control) -> None:
        self.ws, self.c = ws, c
        self.owner: str | None = None
        #: synchronous write of a prepared frame, when the server offers it (control/wsserver.py)
        self.write: Callable[[bytes], bool] | None = ws.scope.get("extensions", {}).get(EXTENSION, {}).get("write")
        self.sending = False  #: the writer is inside an awaited send
        # (type, encoded frame, event ts or None): frames are encoded once, events once per job for all sockets
        self.outbox: asyncio.Queue[tuple[str, str, float | None]] = asyncio.Queue(OUTBOX)
        self.subs: dict[str, asyncio.Task[None]] = {}
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        self._put((message["type"], json.dumps(message, separators=(",", ":")), None))

    def _put(self, item: tuple[str, str, float | None]) -> None:
        try:
            self.outbox.put_nowait(item)
        except asyncio.QueueFull:
            self.closed = True  # the writer closes with CLOSE_SLOW

    def error(self, code: str, message: str, job_id: str | None = None) -> None:
        self.send({"type": "error", "code": code, "message": message, "jobId": job_id})

    async def writer(self) -> None:
        while not self.closed:
            kind, text, ts = await self.outbox.get()
            if kind == _CLOSE:
                self.closed = True
                await self.ws.close(int(text))
                return
            self.sending = True
            try:
                await self.ws.send_text(text)
            except Exception as e:  # the peer went away; reading ends the session
                metrics.WS_SEND_ERRORS.inc()
                log.info("ws send failed", error=repr(e))
                self.closed = True
                return
            finally:
                self.sending = False
            metrics.WS_MESSAGES.labels("out", kind).inc()
            if ts is not None:
                metrics.EVENT_DELIVERY.observe(max(0.0, time.time() - ts))
        if self.outbox.full():
            await self.ws.close(CLOSE_SLOW)

    def close_after_pending(self, code: int) -> None:
        """Send what is queued (e.g. the error frame), then close with code."""
        self.outbox.put_nowait((_CLOSE, str(code), None))

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.c.settings.ws_heartbeat_seconds)
            self.send({"type": "heartbeat", "ts": time.time()})

    async def handle(self, raw: str) -> bool:
        """Handle one client frame; False when the socket must close."""
        if len(raw) > self.c.settings.ws_max_message_bytes:
            self.error("too_large", f"frames are limited to {self.c.settings.ws_max_message_bytes} bytes")
            return True
        try:
            msg = ClientMessage.model_validate_json(raw)
        except ValidationError as e:
            first = e.errors()[0]
            code = "invalid_json" if first["type"] == "json_invalid" else "invalid_message"
            self.error(code, first["msg"])
            return True
        action = ALIASES.get(msg.action, msg.action)
        metrics.WS_MESSAGES.labels("in", action).inc()
        if action == "auth" or self.owner is None:
            return self.authenticate(msg.token if action == "auth" else None)
        if action == "ping":
            self.send({"type": "pong", "ts": time.time()})
        elif action == "subscribe":
            await self.subscribe(msg.job_id, msg.since)
        elif action == "unsubscribe":
            task = self.subs.pop(msg.job_id or "", None)
            if task is not None:
                task.cancel()
            self.send({"type": "unsubscribed", "jobId": msg.job_id})
        return True

    async def handle_safely(self, raw: str) -> bool:
        """handle(), with any failure answered by an error frame: the socket stays open and says nothing more
        about other owners' jobs than a missing job would."""
        try:
            return await self.handle(raw)
        except RedisError as e:  # like a 503: the client reconnects and resubscribes after its last seq
            log.warning("ws: redis unavailable; closing with 1013", error=f"{type(e).__name__}: {e}")
            self.close_after_pending(CLOSE_TRY_AGAIN)
        except Exception:
            log.exception("ws: message handling failed")
            self.error("internal", "internal error")
        return True

    def authenticate(self, token: str | None) -> bool:
        try:
            self.owner = authenticate(self.c.settings, token)
        except ApiError:
            self.error("unauthorized", 'authenticate with ?token= or {"action": "auth", "token": ...}')
            return False
        self.send({"type": "ready", "ts": time.time()})
        return True

    async def subscribe(self, job_id: str | None, since: int | None) -> None:
        if not job_id:
            self.error("invalid_message", "subscribe needs a jobId")
            return
        if since is not None and since > MAX_SEQ:
            self.error("invalid_message", f"since is at most {MAX_SEQ}", job_id[:64])
            return
        if job_id in self.subs:
            self.subs.pop(job_id).cancel()  # resubscribe: the new `since` wins
        if len(self.subs) >= self.c.settings.ws_max_subscriptions:
            self.error("too_many_subscriptions", f"at most {self.c.settings.ws_max_subscriptions} per socket", job_id)
            return
        assert self.owner is not None
        try:
            seq = await self.c.events.last_seq(job_id)
            job = await self.c.owned_job(job_id, self.owner)
        except BiplaneError as e:  # a malformed id is "no such job", like another owner's
            self.error(e.code, e.message, job_id[:64])
            return
        self.send(
            {"type": "subscribed", "jobId": job_id, "seq": seq, "job": job.model_dump(by_alias=True, mode="json")}
        )
        self.subs[job_id] = asyncio.create_task(self.forward(job_id, seq if since is None else since))

    async def forward(self, job_id: str, since: int) -> None:
        hub = self.c.hub
        async for event in hub.follow(job_id, since, self.deliver if self.write is not None else None):
            self._put(("event", hub.frame(event)[0], event["ts"]))

    def deliver(self, frame: bytes) -> bool:
        """The hub's fast path: write a live event now when nothing is queued or being sent ahead of it
        (the hub counts what it delivered this way)."""
        return not (self.closed or self.sending or self.outbox.qsize()) and self.write is not None and self.write(frame)

    async def close(self) -> None:
        for task in self.subs.values():
            task.cancel()


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    c: Control = ws.app.state.control
    await ws.accept()
    metrics.WS_CLIENTS.inc()
    session = Session(ws, c)
    token = ws.query_params.get("token")
    writer = asyncio.create_task(session.writer())
    beat = asyncio.create_task(session.heartbeat())
    try:
        if token is not None and not session.authenticate(token):
            session.close_after_pending(CLOSE_UNAUTHORIZED)
            await writer
            return
        while not session.closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            if not await session.handle_safely(raw):
                session.close_after_pending(CLOSE_UNAUTHORIZED)
                await writer
                return
    except WebSocketDisconnect:
        pass
    finally:
        metrics.WS_CLIENTS.dec()
        beat.cancel()
        writer.cancel()
        await session.close()

"""Signed webhook deliveries (Standard Webhooks) for job start/completion/failure/cancel, with retries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from standardwebhooks import Webhook
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from common.jobs import JobStore
from common.keys import Keys
from common.settings import Settings
from control.egress import EgressPolicy, TargetRefused

log = structlog.get_logger(__name__)

TYPES = {"running": "job.started", "completed": "job.completed", "failed": "job.failed", "canceled": "job.canceled"}


def signing_secret(settings: Settings) -> str:
    """The configured whsec_ secret, or one derived from the first API key (stable across restarts)."""
    configured = settings.webhook_secret.get_secret_value()
    if configured:
        return configured
    seed = sorted(settings.api_key_set())[0] if settings.api_key_set() else "biplane"
    return "whsec_" + base64.b64encode(hashlib.sha256(f"biplane-webhook:{seed}".encode()).digest()).decode()


class DeliveryFailed(Exception):
    pass


class Webhooks:
    """Listens to the hub's status events; one control process delivers each (job, status) once."""

    def __init__(self, settings: Settings, store: JobStore, keys: Keys) -> None:
        self.settings, self.store, self.keys = settings, store, keys
        self.signer = Webhook(signing_secret(settings))
        self.policy = EgressPolicy.from_settings(settings)
        self.tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "status" and event.get("status") in TYPES:
            task = asyncio.create_task(self.deliver(event["jobId"], event["status"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def deliver(self, job_id: str, status: str) -> None:
        if not await self.store.calls.command("HGET", self.keys.job(job_id), "webhook"):
            return  # the common case, one cheap read: most jobs name no webhook
        job = await self.store.load(job_id)
        if job is None or not job.webhook:
            return
        claim = self.keys.webhook_claim(job_id, status)
        if not await self.store.redis.set(claim, "1", nx=True, ex=self.settings.job_ttl_seconds):
            return  # another control process delivers it
        body = json.dumps(
            {
                "type": TYPES[status],
                "timestamp": datetime.now(UTC).isoformat(),
                "data": job.model_dump(by_alias=True, mode="json", exclude={"owner", "webhook"}),
            },
            separators=(",", ":"),
        )
        msg_id = f"msg_{uuid.uuid5(uuid.NAMESPACE_URL, f'{job_id}/{status}').hex}"
        try:
            async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds) as client:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type((DeliveryFailed, httpx.TransportError)),
                    wait=wait_exponential(multiplier=0.5, max=30),
                    stop=stop_after_delay(self.settings.webhook_retry_seconds),
                    reraise=True,
                ):
                    with attempt:
                        await self._post(client, job.webhook, msg_id, body)
            log.info("webhook delivered", job_id=job_id, status=status)
        except TargetRefused as e:
            log.warning("webhook refused", job_id=job_id, status=status, error=str(e))
        except (DeliveryFailed, httpx.TransportError) as e:
            log.warning("webhook gave up", job_id=job_id, status=status, error=repr(e))

    async def _post(self, client: httpx.AsyncClient, url: str, msg_id: str, body: str) -> None:
        # Resolved and checked on every attempt; the request goes to the address that passed the check.
        target = await self.policy.resolve(url)
        now = datetime.fromtimestamp(int(time.time()), UTC)
        headers = {
            **target.headers,
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(msg_id, now, body),
        }
        resp = await client.post(target.url, content=body, headers=headers, extensions=target.extensions)
        if resp.status_code >= 300:
            raise DeliveryFailed(f"{target.host} answered {resp.status_code}")

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

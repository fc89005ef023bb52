"""API keys (bearer), job ownership and the per-key submission rate limit."""

from __future__ import annotations

import hashlib
import hmac
import time

from redis.asyncio import Redis

from common.keys import Keys
from common.settings import Settings
from control.errors import ApiError


def owner_of(api_key: str) -> str:
    """The owner id stored on jobs: a fingerprint, never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def authenticate(settings: Settings, presented: str | None) -> str:
    """Return the owner of a valid key or raise 401."""
    if presented:
        for key in settings.api_key_set():
            if hmac.compare_digest(key.encode(), presented.encode()):
                return owner_of(key)
    raise ApiError(401, "unauthorized", "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


def bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return x_api_key


async def rate_limit(redis: Redis, keys: Keys, owner: str, per_minute: int) -> None:
    """Fixed one-minute window per key: 429 with Retry-After when the window is used up."""
    window = int(time.time() // 60)
    key = keys.rate(owner, window)
    async with redis.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, 120)
        count, _ = await p.execute()
    if int(count) > per_minute:
        retry = max(1, 60 - int(time.time()) % 60)
        raise ApiError(
            429, "rate_limited", f"more than {per_minute} submissions per minute", headers={"Retry-After": str(retry)}
        )

"""Redis calls that queue up while another is on its way go out together as one pipeline: one connection
checkout and one socket write for all of them, each caller still getting its own reply or error, in the order
issued.

A busy plane settles many jobs at once (a batched round starts, completes and hands on every member in the same
few turns); redis-py would otherwise take a pooled connection, write and wait for each call on its own, which
the profile showed as the largest share of a plane's CPU. A call made while fewer than DIRECT calls are on
their way is sent at once, in the caller's own task, so one job at a time pays nothing extra (like Nagle's
algorithm: batching comes from waiting on replies already due, never from a timer or an extra turn of the loop).
Calls of one task are awaited one after the other, so their order holds; calls of different tasks never had one.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@dataclass(frozen=True)
class _Call:
    script: AsyncScript | None  #: a Lua script (args = its argv), or None for a plain command (args = the command)
    keys: tuple[Any, ...]
    args: tuple[Any, ...]


#: Calls sent on their own at once while fewer are on their way (a plane's executor, its lease watcher and its
#: event listener each get one without waiting on the others); past that, calls queue for the next pipeline.
DIRECT = 4


class Coalescer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queued: list[tuple[_Call, asyncio.Future[Any]]] = []
        self._direct_calls = 0  #: calls on their way on their own
        self._draining = False  #: a pipeline of queued calls is on its way (and the queue will be sent after it)

    async def script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """script(keys=keys, args=args), coalesced."""
        return await self._call(_Call(script, tuple(keys), tuple(args)))

    async def command(self, *args: Any) -> Any:
        """A plain command (e.g. "HGET", key, field), coalesced."""
        return await self._call(_Call(None, (), args))

    async def _call(self, call: _Call) -> Any:
        if self._direct_calls >= DIRECT or self._draining:
            reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queued.append((call, reply))
            return await reply
        self._direct_calls += 1
        try:
            return await self._direct(call)
        finally:
            self._direct_calls -= 1
            if self._queued and not self._draining:
                self._draining = True
                asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Send what queued, one pipeline at a time, until the queue is empty."""
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._send(batch)
        finally:
            self._draining = False

    async def _direct(self, call: _Call) -> Any:
        if call.script is None:
            return await self.redis.execute_command(*call.args)
        return await call.script(keys=list(call.keys), args=list(call.args))

    async def _send(self, batch: list[tuple[_Call, asyncio.Future[Any]]]) -> None:
        """Send the batch; every reply or error goes to its caller's future (never raises)."""
        if len(batch) == 1:
            call, reply = batch[0]
            try:
                result = await self._direct(call)
            except Exception as e:
                _settle(reply, error=e)
            else:
                _settle(reply, result)
            return
        scripts = list({c.script.sha: c.script for c, _ in batch if c.script is not None}.values())
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                # Loaded first, in the same pipeline: a Redis that lost its scripts (restarted, flushed) never
                # answers NOSCRIPT here, so no call is run again later out of the order it was issued in.
                for script in scripts:
                    pipe.execute_command("SCRIPT LOAD", script.script)
                for c, _ in batch:
                    if c.script is None:
                        pipe.execute_command(*c.args)
                    else:
                        pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as e:  # the connection failed: every caller of the batch gets the error
            for _, reply in batch:
                _settle(reply, error=e)
            return
        for (_, reply), result in zip(batch, replies[len(scripts) :], strict=True):
            if isinstance(result, Exception):
                _settle(reply, error=result)
            else:
                _settle(reply, result)


def _settle(reply: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if reply.done():
        return  # the caller went away (canceled)
    if error is not None:
        reply.set_exception(error)
    else:
        reply.set_result(result)


_shared: weakref.WeakKeyDictionary[Redis, Coalescer] = weakref.WeakKeyDictionary()


def coalescer(redis: Redis) -> Coalescer:
    """The client's one Coalescer: every store, log and bridge on a client shares its turns."""
    found = _shared.get(redis)
    if found is None:
        found = _shared[redis] = Coalescer(redis)
    return found

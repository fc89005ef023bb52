"""Redis calls issued in the same event-loop turn go out together as one pipeline: one connection checkout and
one socket write for all of them, each caller still getting its own reply or error, in the order issued.

A busy plane settles many jobs at once (a batched round starts, completes and hands on every member in the same
few turns); redis-py would otherwise take a pooled connection, write and wait for each call on its own, which
the profile showed as the largest share of a plane's CPU. A call alone in its turn goes out as a plain command,
so one job at a time pays nothing extra.
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
    script: AsyncScript | None  #: a Lua script (args = its keys + argv), or None for a plain command
    keys: tuple[Any, ...]
    args: tuple[Any, ...]
    reply: asyncio.Future[Any]


class Coalescer:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queued: list[_Call] = []

    async def script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """script(keys=keys, args=args), sent with the other calls of this turn."""
        return await self._queue(script, tuple(keys), tuple(args))

    async def command(self, *args: Any) -> Any:
        """A plain command (e.g. "HGET", key, field), sent with the other calls of this turn."""
        return await self._queue(None, (), args)

    def _queue(self, script: AsyncScript | None, keys: tuple[Any, ...], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        self._queued.append(call)
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return call.reply

    def _flush(self) -> None:
        calls, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(calls))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # errors went to the callers' futures

    async def _send(self, calls: list[_Call]) -> None:
        if len(calls) == 1:
            await self._one(calls[0])
            return
        scripts = list({c.script.sha: c.script for c in calls if c.script is not None}.values())
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                # Loaded first, in the same pipeline: a Redis that lost its scripts (restarted, flushed) never
                # answers NOSCRIPT here, so no call is run again later out of the order it was issued in.
                for script in scripts:
                    pipe.execute_command("SCRIPT LOAD", script.script)
                for c in calls:
                    if c.script is None:
                        pipe.execute_command(*c.args)
                    else:
                        pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as e:  # the connection failed: every caller of this turn gets the error
            for c in calls:
                if not c.reply.done():
                    c.reply.set_exception(e)
            raise
        for c, reply in zip(calls, replies[len(scripts) :], strict=True):
            if c.reply.done():
                continue  # the caller went away (canceled)
            elif isinstance(reply, Exception):
                c.reply.set_exception(reply)
            else:
                c.reply.set_result(reply)

    async def _one(self, c: _Call) -> None:
        try:
            if c.script is None:
                reply = await self.redis.execute_command(*c.args)
            else:
                reply = await c.script(keys=list(c.keys), args=list(c.args))
        except BaseException as e:
            if not c.reply.done():
                c.reply.set_exception(e)
            raise
        if not c.reply.done():
            c.reply.set_result(reply)


_shared: weakref.WeakKeyDictionary[Redis, Coalescer] = weakref.WeakKeyDictionary()


def coalescer(redis: Redis) -> Coalescer:
    """The client's one Coalescer: every store, log and bridge on a client shares its turns."""
    found = _shared.get(redis)
    if found is None:
        found = _shared[redis] = Coalescer(redis)
    return found

"""Calls coalesced into one pipeline per event-loop turn, against the fixture Redis: every caller gets its own
reply or its own error, and scripts Redis forgot (a restart, SCRIPT FLUSH) are loaded again."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common.pipelining import Coalescer

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def script_loads(redis: Redis) -> int:
    """SCRIPT LOAD calls so far: the coalescer sends them at the head of each pipeline only."""
    return int((await redis.info("commandstats")).get("cmdstat_script|load", {}).get("calls", 0))


async def test_calls_that_queue_up_go_as_one_pipeline_each_getting_its_reply(redis: Redis) -> None:
    calls = Coalescer(redis)
    script = redis.register_script(INCR_BY)
    await redis.set("pipelining:text", "not a number")
    await redis.delete("pipelining:n")
    loads = await script_loads(redis)
    gathered = await asyncio.gather(
        *(calls.script(script, ["pipelining:n"], [i]) for i in range(1, 21)),
        calls.command("INCR", "pipelining:text"),
        return_exceptions=True,
    )
    replies = gathered[:20]
    assert all(isinstance(r, int) for r in replies) and len(set(replies)) == 20  # each caller its own reply
    assert max(replies) == sum(range(1, 21)) == int(await redis.get("pipelining:n") or 0)
    assert isinstance(gathered[20], ResponseError)  # that caller's error only
    assert await script_loads(redis) > loads, "the calls past the first few went out as a pipeline"


async def test_a_flushed_script_is_loaded_again(redis: Redis) -> None:
    calls = Coalescer(redis)
    script = redis.register_script(INCR_BY)
    await redis.delete("pipelining:m")
    assert await calls.script(script, ["pipelining:m"], [2]) == 2
    await redis.script_flush()
    replies = await asyncio.gather(*(calls.script(script, ["pipelining:m"], [1]) for _ in range(3)))
    assert sorted(replies) == [3, 4, 5]
    assert await calls.script(script, ["pipelining:m"], [1]) == 6  # alone in its turn: a plain call


async def test_a_lost_connection_reaches_every_caller_of_the_turn(redis: Redis) -> None:
    gone = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    calls = Coalescer(gone)
    results = await asyncio.gather(*(calls.command("GET", f"k{i}") for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    with pytest.raises(RedisConnectionError):
        await calls.command("GET", "alone")
    await gone.aclose()

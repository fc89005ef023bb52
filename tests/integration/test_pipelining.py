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


async def test_one_turn_of_calls_gets_each_reply_and_each_error(redis: Redis) -> None:
    calls = Coalescer(redis)
    script = redis.register_script(INCR_BY)
    await redis.set("pipelining:text", "not a number")
    await redis.delete("pipelining:n")
    gathered = await asyncio.gather(
        *(calls.script(script, ["pipelining:n"], [i]) for i in range(1, 6)),
        calls.command("INCR", "pipelining:text"),
        calls.command("GET", "pipelining:n"),
        return_exceptions=True,
    )
    assert gathered[:5] == [1, 3, 6, 10, 15]  # in the order issued
    assert isinstance(gathered[5], ResponseError)  # that caller's error only
    assert gathered[6] == b"15"


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

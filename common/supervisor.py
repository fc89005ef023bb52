"""Watches one running node: cancel and stop reach it in any phase, a silent node is failed, heartbeats flow.

A node runs inline (a coroutine, or a thread for sync tasks: short control-plane work) or in a child process
(tasks registered with `isolated=True`: the ML tasks). Either way the supervisor polls a few times a second:
- cancel (or a lost lease): the child is killed, an inline task is abandoned with its cancel flag set; the
  node ends `canceled` at once, whatever the task is doing;
- graceful stop of the process: the task is asked to stop at its next step boundary (training saves a
  checkpoint), and killed after `stop_grace_seconds`;
- watchdog: no report from the task for `node_silence_seconds` (per-service `silence_seconds`) fails the node;
- heartbeat: when the node said nothing for `node_heartbeat_seconds`, an event repeats its phase and ETA, so a
  running node is never quiet for longer than that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from common.childproc import ChildProcess, ChildSpec
from common.errors import JobCanceled, TaskInputError

#: How often the supervisor looks at cancel, the watchdog and heartbeats.
TICK_SECONDS = 0.2


class NodeError(Exception):
    """A node that did not complete. retryable: LangGraph may run it again within the budget."""

    def __init__(self, node_id: str, error: str, *, retryable: bool = False, canceled: bool = False) -> None:
        super().__init__(f"{node_id}: {error}")
        self.node_id, self.error, self.retryable, self.canceled = node_id, error, retryable, canceled


class Pulse:
    """What the supervisor knows of a running node: its phase, last report, last progress figures."""

    def __init__(self, node_id: str, write: Callable[[dict[str, Any]], None]) -> None:
        self.node_id, self.write = node_id, write
        self.phase = "starting"
        self.last_report = self.last_event = time.monotonic()
        self.figures: dict[str, Any] = {}
        self.eta_at = 0.0
        self.closed = False

    def emit(self, event: dict[str, Any]) -> None:
        """A task's event: remembered, then written (dropped once the node has ended)."""
        if self.closed:
            return
        now = time.monotonic()
        self.last_report = self.last_event = now
        if event.get("phase"):
            self.phase = event["phase"] = str(event["phase"])[:64]  # the event schema's bound
        if event.get("kind") == "progress":
            self.figures.update({k: event[k] for k in ("step", "totalSteps", "etaSeconds") if event.get(k) is not None})
            if event.get("etaSeconds") is not None:
                self.eta_at = now
        self.write(event)

    def beat(self) -> None:
        """Repeat the node's phase and figures (ETA counted down) when it has been quiet."""
        now = time.monotonic()
        fields = dict(self.figures)
        if "etaSeconds" in fields:
            fields["etaSeconds"] = round(max(0.0, fields["etaSeconds"] - (now - self.eta_at)), 1)
        self.last_event = now
        self.write({"kind": "progress", "nodeId": self.node_id, "phase": self.phase, **fields})


class Runner(Protocol):
    async def start(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    async def wait(self, timeout: float) -> None: ...
    def request_stop(self) -> None: ...
    async def kill(self) -> None: ...
    async def outcome(self) -> dict[str, Any]: ...


class InlineRunner:
    """A task in this process: a coroutine, or a sync function in a thread (abandoned when killed)."""

    def __init__(self, node_id: str, coro: Any, cancel: threading.Event, retry: Callable[[], bool]) -> None:
        self.node_id, self.cancel, self.retry = node_id, cancel, retry
        self.coro = coro
        self.future: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        self.future = asyncio.ensure_future(self.coro)

    @property
    def finished(self) -> bool:
        assert self.future is not None
        return self.future.done()

    async def wait(self, timeout: float) -> None:
        assert self.future is not None
        await asyncio.wait({self.future}, timeout=timeout)

    def request_stop(self) -> None:
        self.cancel.set()

    async def kill(self) -> None:
        self.cancel.set()  # a thread stops at its next check; its late events are dropped by the pulse
        assert self.future is not None
        self.future.cancel()

    async def outcome(self) -> dict[str, Any]:
        assert self.future is not None
        try:
            return dict(await self.future or {})
        except JobCanceled as e:
            raise NodeError(self.node_id, "canceled", canceled=True) from e
        except (TaskInputError, TypeError, ValueError) as e:
            raise NodeError(self.node_id, str(e)) from e
        except Exception as e:
            raise NodeError(self.node_id, f"{type(e).__name__}: {e}", retryable=self.retry()) from e


class ChildRunner:
    """A task in a child process (see common.childproc)."""

    def __init__(self, spec: ChildSpec, pulse: Pulse, retry: Callable[[], bool], memory_options: str) -> None:
        self.node_id, self.pulse, self.retry, self.memory_options = spec.node_id, pulse, retry, memory_options
        self.child = ChildProcess(spec, pulse.emit)

    async def start(self) -> None:
        await self.child.start()

    @property
    def finished(self) -> bool:
        return self.child.done.is_set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.child.done.wait(), timeout)
        except TimeoutError:
            return

    def request_stop(self) -> None:
        self.child.request_stop()

    async def kill(self) -> None:
        await self.child.kill()

    def _oom(self, detail: str) -> NodeError:
        return NodeError(
            self.node_id,
            f"out of memory in phase {self.pulse.phase}: lower {self.memory_options} ({detail})",
        )

    async def outcome(self) -> dict[str, Any]:
        await self.child.reap()
        final = self.child.final
        if final is None:
            sig = self.child.exit_signal
            if sig == 9:  # not ours (we only kill on cancel/stop/watchdog): the kernel's OOM killer
                raise self._oom("the task process was killed by the system, most likely for memory")
            raise NodeError(
                self.node_id,
                f"the task process died (exit {self.child.proc.exitcode}) in phase {self.pulse.phase}",
                retryable=self.retry(),
            )
        kind = final[0]
        if kind == "result":
            return dict(final[1])
        if kind == "canceled":
            raise NodeError(self.node_id, "canceled", canceled=True)
        if kind == "input":
            raise NodeError(self.node_id, final[1])
        if kind == "oom":
            raise self._oom(final[1])
        raise NodeError(self.node_id, final[1], retryable=self.retry())


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


async def supervise(
    runner: Runner,
    pulse: Pulse,
    *,
    cancel: threading.Event,
    node_cancel: threading.Event | None,
    graceful: Callable[[], bool],
    silence_seconds: float,
    heartbeat_seconds: float,
    grace_seconds: float,
    retry: Callable[[], bool],
) -> dict[str, Any]:
    """Start the runner and wait for it, acting on cancel/stop, silence and quiet periods; returns its output."""
    starting = asyncio.ensure_future(runner.start())  # the first child waits for the forkserver's preload
    while not starting.done():
        await asyncio.wait({starting}, timeout=TICK_SECONDS)
        if time.monotonic() - pulse.last_event >= heartbeat_seconds:
            pulse.beat()
    await starting
    pulse.last_report = pulse.last_event = time.monotonic()  # the watchdog counts from the task's start
    try:
        while not runner.finished:
            await runner.wait(TICK_SECONDS)
            if runner.finished:
                break
            if cancel.is_set():
                if node_cancel is not None:
                    node_cancel.set()
                if graceful():
                    runner.request_stop()
                    await runner.wait(grace_seconds)
                if not runner.finished:
                    await runner.kill()
                    raise NodeError(pulse.node_id, "canceled", canceled=True)
                break
            now = time.monotonic()
            if now - pulse.last_report > silence_seconds:
                await runner.kill()
                raise NodeError(
                    pulse.node_id,
                    f"no progress for {_duration(silence_seconds)} in phase {pulse.phase}",
                    retryable=retry(),
                )
            if now - pulse.last_event >= heartbeat_seconds:
                pulse.beat()
        return await runner.outcome()
    finally:
        pulse.closed = True

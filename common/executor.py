"""A plane's executor: consume its job stream, run ready nodes in rounds, hand the job on, ack.

At-least-once delivery is made safe by the per-job lease, the idempotent handoff, per-node saved
outputs and "nothing of mine to run: pass it on or drop it".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from common import metrics
from common.bridge import BadEntry, Bridge, Entry
from common.events import EventLog, body
from common.jobs import FINAL_STATUSES, JobStore, overall_progress, record_from_hash
from common.keys import Keys
from common.models.graph_schema import Node, Plane
from common.models.job_schema import JobRecord
from common.registry import Registry
from common.rounds import (
    ENDED,
    MEMBER,
    BatchRuntime,
    NodeError,
    RoundGraphs,
    RoundRuntime,
    dependencies,
    next_plane,
    ready_nodes,
)
from common.settings import Settings
from common.storage import Storage

log = structlog.get_logger(__name__)

#: How often a running job's lease is renewed and its cancel flag read (bounds cancel latency).
WATCH_SECONDS = 0.5
#: Minimum gap between progress writes to the job record per node (events are not throttled).
PROGRESS_WRITE_SECONDS = 0.5


class LeaseBusy(Exception):
    """Another consumer works on the job now; retry this entry later."""


@dataclass(eq=False)
class _Watch:
    token: str
    cancel: threading.Event = field(default_factory=threading.Event)
    #: set when the lease was lost or the process is shutting down: write nothing more, do not ack
    lost: bool = False
    #: set when its handling ended (handed on, or lease released): nothing to renew any more
    settled: bool = False


@dataclass(eq=False)
class _Held:
    """An entry whose job lease this process took, with what the lease script returned."""

    entry: Entry
    watch: _Watch
    canceled: bool
    raw: dict[bytes, bytes]


@dataclass(eq=False)
class _Member:
    """A job in a batched round: its held lease, its record and the one node it runs."""

    held: _Held
    job: JobRecord
    node: Node
    progress: dict[str, float] = field(default_factory=dict)
    written: dict[str, float] = field(default_factory=dict)


def state_token(job: JobRecord) -> str:
    """Identifies how far the job got: one handoff per plane per state."""
    done = sorted(n.id for n in job.graph.nodes if n.status == "completed")
    return hashlib.sha1(",".join(done).encode()).hexdigest()[:16]


class Executor:
    def __init__(
        self,
        plane: Plane,
        settings: Settings,
        redis: Redis,
        registry: Registry,
        storage: Storage | None,
        consumer: str | None = None,
    ) -> None:
        self.plane, self.settings, self.registry, self.storage = plane, settings, registry, storage
        keys = Keys(settings.key_prefix)
        self.events = EventLog(redis, keys, settings.event_maxlen)
        self.store = JobStore(redis, keys, self.events, settings.job_ttl_seconds)
        self.bridge = Bridge(redis, keys, settings)
        self.graphs = RoundGraphs(settings.max_node_attempts)
        self.consumer = consumer or settings.instance or f"{plane}-{socket.gethostname()}-{os.getpid()}"
        self.capacity = settings.concurrency or (32 if plane == "control" else 1)
        self.batch_size = settings.batch_size
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.deferred: dict[str, tuple[float, Entry, int]] = {}
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        #: reading its stream now: false from any failure of the loop until it reads again (`/ready`)
        self.consuming = False
        self.watches: set[_Watch] = set()

    # -- loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the stream until stop(); never a silent stall.

        After any failure (Redis down, or back empty: NOGROUP) the loop logs it, reports itself not consuming
        (`/ready` answers 503), backs off and starts over: recreates the groups, re-reads its own pending
        entries and resumes reading."""
        backoff, last_claim, started = 0.2, 0.0, False
        while not self.stopping.is_set():
            try:
                if not started:
                    await self.bridge.ensure_groups()
                    for e in await self.bridge.read_own_pending(self.plane, self.consumer):
                        self._dispatch(e)
                    started = True
                    if self.ready.is_set():
                        log.info("executor consuming again", plane=self.plane)
                    self.ready.set()
                    self.consuming = True
                self._dispatch_due()
                free = self.capacity - len(self.inflight)
                if free <= 0:
                    await asyncio.wait(list(self.inflight.values()), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if time.monotonic() - last_claim > min(5.0, self.settings.claim_idle_seconds / 2):
                    last_claim = time.monotonic()
                    stale = await self.bridge.claim_stale(
                        self.plane, self.consumer, int(self.settings.claim_idle_seconds * 1000), count=free
                    )
                    for e in stale:
                        log.info("reclaimed stale entry", plane=self.plane, entry=e.id)
                        self._dispatch(e)
                    await self._sample_depth()
                    free = self.capacity - len(self.inflight)
                    if free <= 0:
                        continue
                block = 200 if self.deferred else 1000
                self._dispatch_read(await self.bridge.read(self.plane, self.consumer, count=free, block_ms=block))
                backoff = 0.2
            except Exception as e:  # Redis down or back empty (NOGROUP), or a bug: say so, then start over
                if isinstance(e, RedisError | OSError):
                    metrics.REDIS_ERRORS.labels(self.plane).inc()
                    error = f"{type(e).__name__}: {e}"
                    log.warning("executor not consuming: redis failed", plane=self.plane, error=error, backoff=backoff)
                else:
                    log.exception("executor not consuming: loop failed", plane=self.plane, backoff=backoff)
                started = self.consuming = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.consuming = False
        if self.inflight:  # graceful: let running rounds stop at their next boundary
            await asyncio.wait(list(self.inflight.values()))

    def stop(self) -> None:
        """Stop reading; running tasks stop at their next step boundary and their entries stay unacked."""
        self.stopping.set()
        for watch in self.watches:
            watch.lost = True
            watch.cancel.set()

    async def _sample_depth(self) -> None:
        for plane in ("control", "data"):
            length, pending = await self.bridge.depth(plane)
            metrics.STREAM_LENGTH.labels(plane).set(length)
            metrics.STREAM_PENDING.labels(plane).set(pending)

    def _dispatch(self, e: Entry | BadEntry, tries: int = 0) -> None:
        if e.id in self.inflight:
            return
        self.deferred.pop(e.id, None)
        coro = self.bridge.dead_letter(e) if isinstance(e, BadEntry) else self._handle(e, tries)
        self._track([e.id], asyncio.create_task(coro))

    def _dispatch_read(self, read: list[Entry | BadEntry]) -> None:
        """What one read returned: entries of several jobs go in batches of up to batch_size."""
        fresh: list[Entry] = []
        for e in read:
            if isinstance(e, Entry) and e.id not in self.inflight:
                fresh.append(e)
            else:
                self._dispatch(e)  # a bad entry goes to the dead letters; one in flight is left alone
        if len(fresh) == 1 or self.batch_size <= 1:
            for e in fresh:
                self._dispatch(e)
            return
        for start in range(0, len(fresh), self.batch_size):
            batch = fresh[start : start + self.batch_size]
            self._track([e.id for e in batch], asyncio.create_task(self._handle_batch(batch)))

    def _track(self, entry_ids: list[str], task: asyncio.Task[None]) -> None:
        for entry_id in entry_ids:
            self.inflight[entry_id] = task
        metrics.BUSY.labels(self.plane).set(len(self.inflight))
        task.add_done_callback(functools.partial(self._done, entry_ids))

    def _done(self, entry_ids: list[str], task: asyncio.Task[None]) -> None:
        for entry_id in entry_ids:
            self._untrack(entry_id, task)

    def _untrack(self, entry_id: str, task: asyncio.Task[None] | None) -> None:
        """The entry no longer counts against capacity (unless another task took it over since)."""
        if task is None or self.inflight.get(entry_id) is task:
            self.inflight.pop(entry_id, None)
            metrics.BUSY.labels(self.plane).set(len(self.inflight))

    def _dispatch_due(self) -> None:
        now = time.monotonic()
        for _due, entry, tries in [d for d in self.deferred.values() if d[0] <= now]:
            self._dispatch(entry, tries)

    def _defer(self, e: Entry, tries: int) -> None:
        delay = min(0.1 * 2**tries, 5.0) * (0.5 + random.random())
        self.deferred[e.id] = (time.monotonic() + delay, e, tries + 1)

    # -- one entry ------------------------------------------------------------------------------
    async def _handle(self, e: Entry, tries: int, held: _Held | None = None) -> None:
        """Handle one delivery; never raises. Unfinished work stays unacked and is retried."""
        await self._guarded(e, tries, self._handle_entry(e, held))

    async def _guarded(self, e: Entry, tries: int, work: Awaitable[str]) -> None:
        """Await the handling of e; never raises. Unfinished work stays unacked and is retried."""
        try:
            outcome = await work
        except Exception as err:
            self._retry_later(e, tries, err)
        else:
            metrics.ENTRIES.labels(self.plane, outcome).inc()

    def _retry_later(self, e: Entry, tries: int, err: Exception) -> None:
        """Count and log why e's handling did not finish, and retry it after a backoff that fits the reason."""
        if isinstance(err, LeaseBusy):
            metrics.ENTRIES.labels(self.plane, "deferred").inc()
            if not self.stopping.is_set():
                self._defer(e, tries)
        elif isinstance(err, ConnectionError | TimeoutError):
            metrics.REDIS_ERRORS.labels(self.plane).inc()
            log.warning("redis failed while handling; will retry", job_id=e.job_id, entry=e.id, error=repr(err))
            self._defer(e, tries)
        else:
            metrics.ENTRIES.labels(self.plane, "error").inc()
            log.error("entry handling failed; will retry", job_id=e.job_id, plane=self.plane, entry=e.id, exc_info=err)
            self._defer(e, max(tries, 4))

    async def _acquire(self, entries: list[Entry]) -> list[_Held | None]:
        """Take the leases of entries' jobs in one round trip (one token per handling: two entries of the same
        job in this process exclude each other too); None where another consumer holds one."""
        watches = [_Watch(token=f"{self.consumer}/{e.id}") for e in entries]
        claims = [(e.job_id, w.token) for e, w in zip(entries, watches, strict=True)]
        grants = await self.bridge.acquire(claims, self.lease_ms)
        held: list[_Held | None] = []
        for e, w, (acquired, canceled, raw) in zip(entries, watches, grants, strict=True):
            held.append(_Held(e, w, canceled, raw) if acquired else None)
            if acquired:
                self.watches.add(w)  # from here on every held lease ends in _settle
        return held

    async def _handle_entry(self, e: Entry, held: _Held | None) -> str:
        if held is None:
            [held] = await self._acquire([e])
            if held is None:
                raise LeaseBusy
        watcher = asyncio.create_task(self._watch([held]))
        watcher.add_done_callback(_log_crash)
        try:
            return await self._settle(held, self._solo_round(held))
        finally:
            watcher.cancel()

    async def _solo_round(self, held: _Held) -> JobRecord | None:
        """Run the job's round on its own; the job as it left it (None: unknown job, dead-lettered)."""
        e = held.entry
        job = record_from_hash(e.job_id, held.raw)
        if job is None:
            await self.bridge.dead_letter(BadEntry(e.plane, e.id, {"job": e.job_id}, "unknown job"))
            return None
        if job.status not in FINAL_STATUSES:
            if held.canceled:
                job = await self._end_canceled(job)
            elif nodes := ready_nodes(job, self.plane):
                job = await self._run_round(job, nodes, held.watch)  # the first node start moves it to running
        return job

    async def _settle(self, held: _Held, work: Awaitable[JobRecord | None]) -> str:
        """Finish a handling whose lease we hold: hand the job on (or end it) and ack in one round trip; on any
        failure, release the lease and leave the entry pending for a retry."""
        finished = False
        try:
            job = await work
            if job is None:
                return "dead_letter"
            if held.watch.lost:
                raise LeaseBusy  # someone took the job over; our entry stays pending
            outcome, handoff = await self._advance(job)
            await self.bridge.finish(held.entry, held.watch.token, handoff)
            finished = True
            return outcome
        finally:
            self.watches.discard(held.watch)
            held.watch.settled = True
            if not finished:
                e = held.entry
                await self.bridge.release(e.job_id, held.watch.token)
                if self.stopping.is_set():  # graceful stop: another consumer takes the job now, not after idling
                    await self.bridge.hand_back(e)
                    log.info("handed the job back to its stream", job_id=e.job_id, plane=self.plane)

    async def _watch(self, held: list[_Held]) -> None:
        """Renew the leases (one round trip for all), keep the entries from looking idle, and pick up cancel
        requests; a handling that settled drops out (its watch leaves self.watches)."""
        touched = time.monotonic()
        while True:
            await asyncio.sleep(min(WATCH_SECONDS, self.settings.lease_seconds / 3))
            held = [h for h in held if not h.watch.settled and not h.watch.lost]
            if not held:
                return
            try:
                states = await self.bridge.renew([(h.entry.job_id, h.watch.token) for h in held], self.lease_ms)
                if time.monotonic() - touched > self.settings.claim_idle_seconds / 3:
                    await self.bridge.touch(self.plane, self.consumer, [h.entry.id for h in held])
                    touched = time.monotonic()
            except RedisError as err:  # any: a NOGROUP from the touch after Redis came back empty included
                log.warning("lease renewal failed", jobs=[h.entry.job_id for h in held], error=repr(err))
                continue
            for h, (owned, canceled) in zip(held, states, strict=True):
                if canceled:
                    h.watch.cancel.set()
                if not owned:
                    log.warning("lease lost; stopping the round", job_id=h.entry.job_id)
                    h.watch.lost = True
                    h.watch.cancel.set()

    async def _run_round(self, job: JobRecord, nodes: list[Node], watch: _Watch) -> JobRecord:
        """Run the plane's ready nodes; returns the job as the round left it."""
        deps = dependencies(job)
        graph = self.graphs.get(nodes, deps)
        runtime = self._runtime(job, watch, deps, {})
        done = {n.id: n.output or {} for n in job.graph.nodes if n.status == "completed"}
        progress = runtime.progress
        written: dict[str, float] = {}
        try:
            async for event in graph.astream({"outputs": done}, context=runtime, stream_mode="custom"):
                await self._relay(job, event, progress, written, watch)
        except NodeError as err:
            return await self._round_failed(job, err, watch)
        # Every node of the round saved its output as it finished (and we hold the lease): no reload.
        return _completed(job, runtime.outputs)

    def _runtime(
        self, job: JobRecord, watch: _Watch, deps: dict[str, list[str]], progress: dict[str, float]
    ) -> RoundRuntime:
        return RoundRuntime(
            job=job,
            plane=self.plane,
            store=self.store,
            registry=self.registry,
            settings=self.settings,
            storage=self.storage,
            cancel=watch.cancel,
            deps=deps,
            progress=progress,
            graceful=self.stopping.is_set,
        )

    async def _round_failed(self, job: JobRecord, err: NodeError, watch: _Watch) -> JobRecord:
        """A node of the round did not complete: end the job canceled or failed (unless the lease is gone)."""
        watch.cancel.set()  # stop sibling threads at their next step boundary
        fresh = await self.store.load(job.job_id) or job
        if watch.lost:
            return fresh
        if err.canceled or await self.bridge.cancel_requested(job.job_id):
            return await self._end_canceled(fresh)
        return await self._end_failed(fresh, err)

    # -- batched rounds -------------------------------------------------------------------------
    async def _handle_batch(self, entries: list[Entry]) -> None:
        """Several deliveries read together: one lease round trip, then every job whose round is one short node
        (no isolated ML task) joins one batched round; the others are handled on their own. Never raises."""
        try:
            held = await self._acquire(entries)
        except Exception as err:  # Redis: every entry is retried on its own later
            for e in entries:
                self._retry_later(e, 0, err)
            return
        members: list[_Member] = []
        for e, h in zip(entries, held, strict=True):
            try:
                member = self._member(h) if h is not None else None
            except Exception:  # e.g. a record that does not parse: the plain path settles it (logged, retried)
                member = None
            if member is not None:
                members.append(member)
            elif h is None:
                self._retry_later(e, 0, LeaseBusy())
                self._untrack(e.id, asyncio.current_task())
            else:
                self._track([e.id], asyncio.create_task(self._handle(e, 0, h)))
        if len(members) == 1:
            await self._handle(members[0].held.entry, 0, members[0].held)
        elif members:
            await self._run_batch(members)

    def _member(self, held: _Held) -> _Member | None:
        """The job as a batch member, when its round here is exactly one short node."""
        job = record_from_hash(held.entry.job_id, held.raw)
        if job is None or held.canceled or job.status in FINAL_STATUSES:
            return None
        nodes = ready_nodes(job, self.plane)
        if len(nodes) != 1:
            return None
        task = self.registry.get(nodes[0].service)
        if task is None or task.runtime.get("isolated"):
            return None  # long ML work runs on its own, never holding a batch of short nodes
        return _Member(held, job, nodes[0])

    async def _run_batch(self, members: list[_Member]) -> None:
        """One LangGraph invocation runs every member's node; each member is settled (handed on, failed,
        canceled) the moment its node ends, while the others run on."""
        metrics.BATCH_SIZE.labels(self.plane).observe(len(members))
        watcher = asyncio.create_task(self._watch([m.held for m in members]))
        watcher.add_done_callback(_log_crash)
        runtime = BatchRuntime(
            rounds=[self._runtime(m.job, m.held.watch, dependencies(m.job), m.progress) for m in members],
            node_ids=[m.node.id for m in members],
        )
        batch = asyncio.current_task()
        settling: dict[int, asyncio.Task[None]] = {}
        try:
            async for event in self.graphs.batch(len(members)).astream(
                {"outputs": {}}, context=runtime, stream_mode="custom"
            ):
                i = event.pop(MEMBER)
                m = members[i]
                if event.get(ENDED):
                    settling[i] = asyncio.create_task(
                        self._settle_member(m, runtime.results[i], runtime.rounds[i], batch)
                    )
                else:
                    await self._relay(m.job, event, m.progress, m.written, m.held.watch)
        except Exception:  # LangGraph itself failed: every member not settled yet is retried on its own
            log.exception("batched round failed", plane=self.plane, size=len(members))
        finally:
            for i, m in enumerate(members):
                if i not in settling:
                    err = RuntimeError("the batched round ended before this member")
                    settling[i] = asyncio.create_task(self._settle_member(m, err, runtime.rounds[i], batch))
            await asyncio.gather(*settling.values())
            watcher.cancel()

    async def _settle_member(
        self, m: _Member, result: dict | BaseException, runtime: RoundRuntime, batch: asyncio.Task[Any] | None
    ) -> None:
        async def after_round() -> JobRecord:
            if isinstance(result, NodeError):
                return await self._round_failed(m.job, result, m.held.watch)
            if isinstance(result, BaseException):
                raise result
            return _completed(m.job, runtime.outputs)

        try:
            await self._guarded(m.held.entry, 0, self._settle(m.held, after_round()))
        finally:
            self._untrack(m.held.entry.id, batch)  # its slot is free while the batch's others run on

    async def _relay(
        self, job: JobRecord, event: dict, progress: dict[str, float], written: dict[str, float], watch: _Watch
    ) -> None:
        """Turn a task's stream-writer event into a job event (progress also lands in the record).

        Fenced by the lease: once another consumer holds the job, nothing of this round is published."""
        if watch.lost:
            return
        fields = {k: v for k, v in event.items() if k != "kind" and v is not None}
        if event.get("kind") == "progress" and event.get("nodeProgress") is not None:
            node_id = event["nodeId"]
            progress[node_id] = float(event["nodeProgress"])
            overall = overall_progress(job, progress)
            fields["progress"] = round(overall, 6)
            now = time.monotonic()
            if now - written.get(node_id, 0.0) >= PROGRESS_WRITE_SECONDS or progress[node_id] >= 1.0:
                written[node_id] = now
                event_body = body(job.job_id, "progress", fields)
                await self.store.set_progress(job.job_id, node_id, progress[node_id], overall, event_body, watch.token)
                return
        await self.events.emit(job.job_id, event.get("kind", "log"), fence=watch.token, **fields)

    async def _advance(self, job: JobRecord) -> tuple[str, tuple[Plane, str] | None]:
        """After a round: finish the job, or name the plane (and job state) to hand it to."""
        if job.status in FINAL_STATUSES:
            return "finished", None
        if all(n.status == "completed" for n in job.graph.nodes):
            if await self.store.set_status(job.job_id, "completed"):
                self._finished(job, "completed")
            return "completed", None
        plane = next_plane(job)
        if plane is None:
            await self._end_failed(job, NodeError("-", "no node can run (graph stalled)"))
            return "stalled", None
        return "handoff", (plane, state_token(job))

    async def _end_failed(self, job: JobRecord, err: NodeError) -> JobRecord:
        for n in job.graph.nodes:
            if n.id == err.node_id:
                await self.store.node_ended(job.job_id, n.id, "failed", err.error)
            elif n.status in ("pending", "running"):
                await self.store.node_ended(job.job_id, n.id, "canceled" if n.status == "running" else "skipped")
        if await self.store.set_status(job.job_id, "failed", f"{err.node_id}: {err.error}"):
            self._finished(job, "failed")
        return await self.store.load(job.job_id) or job

    async def _end_canceled(self, job: JobRecord) -> JobRecord:
        for n in job.graph.nodes:
            if n.status in ("pending", "running"):
                await self.store.node_ended(job.job_id, n.id, "canceled")
        if await self.store.set_status(job.job_id, "canceled"):
            self._finished(job, "canceled")
        return await self.store.load(job.job_id) or job

    def _finished(self, job: JobRecord, status: str) -> None:
        metrics.JOBS_FINISHED.labels(job.workflow, status).inc()
        metrics.JOB_DURATION.labels(job.workflow).observe(max(0.0, time.time() - job.created_at))


def _completed(job: JobRecord, outputs: dict[str, dict]) -> JobRecord:
    """The job after a round whose nodes all completed (each saved its output as it finished)."""
    for n in job.graph.nodes:
        if n.id in outputs:
            n.status, n.output, n.progress = "completed", outputs[n.id], 1.0
    if job.status == "queued":
        job.status = "running"
    return job


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task crashed", task=task.get_name(), error=repr(task.exception()))


async def submit(bridge: Bridge, job: JobRecord) -> None:
    """Queue a stored job on the plane that has a ready node (control when both do)."""
    plane = next_plane(job) or "control"
    await bridge.enqueue(plane, job.job_id, "submit")


async def request_cancel(bridge: Bridge, job_id: str) -> None:
    """Flag the job; a running plane stops within a second, and control ends a queued job."""
    await bridge.request_cancel(job_id)
    await bridge.enqueue("control", job_id, "cancel")

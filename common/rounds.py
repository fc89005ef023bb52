"""One plane round: the plane's ready nodes compiled into a LangGraph StateGraph and streamed.

LangGraph runs the round (parallel independent nodes, joins, retries, custom stream); each node saves
its output to the job record the moment it finishes, so a crash never re-runs a finished node.

A batched round runs the one ready node of each of several jobs in one LangGraph invocation (one graph node
per member, all parallel), so the invocation's fixed cost is shared. A member never raises into the graph:
it retries within its own budget, then marks its end in the stream, and the executor settles that job alone
while the others run on.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy
from pydantic import ValidationError

from common import metrics
from common.childproc import ChildSpec, in_daemon_thread, scratch_dir
from common.context import TaskContext
from common.errors import BiplaneError
from common.jobs import JobStore, overall_progress
from common.models.graph_schema import Node, Plane
from common.models.job_schema import JobRecord
from common.references import check_node
from common.registry import Registry
from common.settings import Settings
from common.storage import Storage
from common.supervisor import ChildRunner, InlineRunner, NodeError, Pulse, Runner, supervise

log = structlog.get_logger(__name__)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**a, **b}


class RoundState(TypedDict):
    outputs: Annotated[dict[str, dict[str, Any]], _merge]


def dependencies(job: JobRecord) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {n.id: [] for n in job.graph.nodes}
    for e in job.graph.edges:
        deps[e.to].append(e.from_)
    return deps


def ready_nodes(job: JobRecord, plane: Plane) -> list[Node]:
    """Unfinished nodes of plane whose dependencies are completed or themselves in this round."""
    deps = dependencies(job)
    status = {n.id: n.status for n in job.graph.nodes}
    chosen: dict[str, Node] = {}
    changed = True
    while changed:  # fixpoint: a node joins once all its deps are done or chosen
        changed = False
        for n in job.graph.nodes:
            if n.id in chosen or n.plane != plane or status[n.id] in ("completed", "skipped", "canceled"):
                continue
            if all(status[d] == "completed" or d in chosen for d in deps[n.id]):
                chosen[n.id] = n
                changed = True
    return [n for n in job.graph.nodes if n.id in chosen]


def next_plane(job: JobRecord) -> Plane | None:
    """The plane that has a node ready to run now, control first."""
    for plane in ("control", "data"):
        if ready_nodes(job, plane):
            return plane
    return None


@dataclass
class RoundRuntime:
    """LangGraph context of one round (passed with `context=`, never checkpointed)."""

    job: JobRecord
    plane: Plane
    store: JobStore
    registry: Registry
    settings: Settings
    storage: Storage | None
    cancel: threading.Event
    deps: dict[str, list[str]]
    progress: dict[str, float]  #: node progress in this round, shared with the executor's relay
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  #: nodes completed in this round
    #: True while the process stops gracefully: running tasks get a chance to checkpoint before being killed
    graceful: Callable[[], bool] = lambda: False

    async def run_node(self, node_id: str, state: RoundState, write: Callable[[dict[str, Any]], None]) -> dict:
        node = next(n for n in self.job.graph.nodes if n.id == node_id)
        if self.cancel.is_set():
            raise NodeError(node_id, "canceled", canceled=True)
        task = self.registry.get(node.service)
        if task is None or task.plane != self.plane:
            raise NodeError(node_id, f"service {node.service!r} is not registered on the {self.plane} plane")
        attempt = await self.store.node_started(self.job.job_id, node_id, start_job=self.job.status == "queued")
        if attempt > self.settings.max_node_attempts:
            raise NodeError(node_id, f"gave up after {attempt - 1} attempts")
        try:
            params = task.params.model_validate(node.params or {})
        except ValidationError as e:
            raise NodeError(node_id, f"invalid params: {e}") from e
        try:  # what the task may read belongs to the job's owner, whatever got the record past submission
            await check_node(self.store, self.job.owner, self.job.job_id, self.job.graph.context, node)
        except BiplaneError as e:
            raise NodeError(node_id, e.message) from e
        started = time.monotonic()
        ids = {"job_id": self.job.job_id, "node": node_id, "service": node.service, "attempt": attempt}
        log.debug("node started", **ids)  # "node completed"/"node ended" say it at info level, with the outcome
        pulse = Pulse(node_id, write)
        inputs = {d: state["outputs"].get(d, {}) for d in self.deps[node_id]}

        def retry() -> bool:
            return attempt < self.settings.max_node_attempts and not self.cancel.is_set()

        node_cancel = None
        runner: Runner
        if task.runtime.get("isolated"):
            spec = ChildSpec(
                target=f"{task.fn.__module__}:{task.fn.__qualname__}",
                params_model=f"{task.params.__module__}:{task.params.__qualname__}",
                params=params.model_dump(by_alias=True, mode="json"),
                job_id=self.job.job_id,
                node_id=node_id,
                service=node.service,
                attempt=attempt,
                settings=self.settings,
                job_inputs=dict(self.job.graph.context or {}),
                inputs=inputs,
                memory_limit_bytes=self.settings.task_memory_bytes,
                scratch=scratch_dir(self.settings, self.job.job_id, node_id),
            )
            runner = ChildRunner(spec, pulse, retry, ", ".join(task.runtime.get("memory_options", ())) or "its size")
        else:
            node_cancel = threading.Event()
            ctx = TaskContext(
                job_id=self.job.job_id,
                node_id=node_id,
                service=node.service,
                attempt=attempt,
                settings=self.settings,
                storage=self.storage,
                job_inputs=dict(self.job.graph.context or {}),
                inputs=inputs,
                emit=pulse.emit,
                cancel=node_cancel,
            )
            coro = task.fn(ctx, params) if task.is_async else in_daemon_thread(task.fn, ctx, params)
            runner = InlineRunner(node_id, coro, node_cancel, retry)
        try:
            output = await supervise(
                runner,
                pulse,
                cancel=self.cancel,
                node_cancel=node_cancel,
                graceful=self.graceful,
                silence_seconds=float(task.runtime.get("silence_seconds") or self.settings.node_silence_seconds),
                heartbeat_seconds=self.settings.node_heartbeat_seconds,
                grace_seconds=self.settings.stop_grace_seconds,
                retry=retry,
            )
            json.dumps(output)  # outputs travel as JSON: fail here, not in Redis
        except NodeError as e:
            outcome = "canceled" if e.canceled else ("error" if e.retryable else "failed")
            metrics.NODES.labels(self.plane, node.service, outcome).inc()
            log.info("node ended", outcome=outcome, error=e.error, **ids)
            raise
        except (TypeError, ValueError) as e:
            metrics.NODES.labels(self.plane, node.service, "failed").inc()
            raise NodeError(node_id, f"output is not JSON: {e}") from e
        self.progress[node_id] = 1.0
        await self.store.node_completed(self.job.job_id, node_id, output, overall_progress(self.job, self.progress))
        self.outputs[node_id] = output
        elapsed = time.monotonic() - started
        metrics.NODES.labels(self.plane, node.service, "completed").inc()
        metrics.NODE_DURATION.labels(self.plane, node.service).observe(elapsed)
        log.info("node completed", seconds=round(elapsed, 3), **ids)
        return output

    async def run_retrying(self, node_id: str, write: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """run_node with the round's retry policy applied here rather than by LangGraph (a batched round must
        not retry or abort the whole invocation for one member)."""
        state: RoundState = {"outputs": {n.id: n.output or {} for n in self.job.graph.nodes if n.status == "completed"}}
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                return await self.run_node(node_id, state, write)
            except NodeError as e:
                if not e.retryable:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RETRY_MAX_SECONDS)


#: Retry backoff between attempts of a node (LangGraph's policy in a plain round, run_retrying in a batch).
RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0

#: Keys of a batched round's stream events: the member index, and the mark that the member's node ended.
MEMBER, ENDED = "_member", "_ended"


@dataclass
class BatchRuntime:
    """LangGraph context of a batched round: member i runs node_ids[i] of rounds[i]'s job."""

    rounds: list[RoundRuntime]
    node_ids: list[str]
    #: member i's result once it ended: its output, its NodeError, or any other exception (a bug, Redis)
    results: dict[int, dict[str, Any] | BaseException] = field(default_factory=dict)

    async def run_member(self, i: int, write: Callable[[dict[str, Any]], None]) -> None:
        def tagged(event: dict[str, Any]) -> None:
            write({**event, MEMBER: i})

        try:
            self.results[i] = await self.rounds[i].run_retrying(self.node_ids[i], tagged)
        except Exception as e:  # this member's end only: the batch's other members run on
            self.results[i] = e
        write({MEMBER: i, ENDED: True})


def _node(node_id: str) -> Callable[..., Any]:
    async def run(state: RoundState, runtime: Runtime[RoundRuntime]) -> dict[str, Any]:
        out = await runtime.context.run_node(node_id, state, runtime.stream_writer)
        return {"outputs": {node_id: out}}

    run.__name__ = f"node_{node_id}"
    return run


def _member(i: int) -> Callable[..., Any]:
    async def run(state: RoundState, runtime: Runtime[BatchRuntime]) -> None:
        await runtime.context.run_member(i, runtime.stream_writer)

    run.__name__ = f"member_{i}"
    return run


class RoundGraphs:
    """Compiled round graphs, cached by shape (node ids and their dependencies)."""

    def __init__(self, max_attempts: int, max_cached: int = 256) -> None:
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            initial_interval=RETRY_INITIAL_SECONDS,
            backoff_factor=2.0,
            max_interval=RETRY_MAX_SECONDS,
            jitter=True,
            retry_on=lambda e: isinstance(e, NodeError) and e.retryable,
        )
        self.max_cached = max_cached
        self._cache: dict[tuple[Any, ...], CompiledStateGraph[Any, Any, Any, Any]] = {}
        self._batches: dict[int, CompiledStateGraph[Any, Any, Any, Any]] = {}

    def get(self, nodes: list[Node], deps: dict[str, list[str]]) -> CompiledStateGraph[Any, Any, Any, Any]:
        ids = {n.id for n in nodes}
        shape = tuple((n.id, tuple(deps[n.id])) for n in nodes)
        graph = self._cache.get(shape)
        if graph is None:
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            graph = self._cache[shape] = self._compile(nodes, deps, ids)
        return graph

    def _compile(
        self, nodes: list[Node], deps: dict[str, list[str]], ids: set[str]
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        builder: StateGraph[Any, Any, Any, Any] = StateGraph(RoundState, context_schema=RoundRuntime)
        has_successor: set[str] = set()
        for n in nodes:
            builder.add_node(n.id, _node(n.id), retry_policy=self.policy)
        for n in nodes:
            local = [d for d in deps[n.id] if d in ids]
            has_successor.update(local)
            if not local:
                builder.add_edge(START, n.id)
            else:
                builder.add_edge(local if len(local) > 1 else local[0], n.id)
        for n in nodes:
            if n.id not in has_successor:
                builder.add_edge(n.id, END)
        return builder.compile()

    def batch(self, size: int) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The graph of a batched round of size members: nodes member_0..member_{size-1}, all parallel."""
        graph = self._batches.get(size)
        if graph is None:
            builder: StateGraph[Any, Any, Any, Any] = StateGraph(RoundState, context_schema=BatchRuntime)
            for i in range(size):
                builder.add_node(f"member_{i}", _member(i))
                builder.add_edge(START, f"member_{i}")
                builder.add_edge(f"member_{i}", END)
            graph = self._batches[size] = builder.compile()
        return graph

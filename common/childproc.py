"""A task run in a child process, so the parent can stop it at once in any phase and get its memory back.

Cancel, the watchdog and a lost lease kill the child (SIGKILL: a torch op, a model load or an upload stops
mid-way; S3 never publishes a half-written object). A graceful stop first asks the child to stop at its next
step boundary (it saves a checkpoint) and kills it after a grace period. An out-of-memory child fails its
node; the worker lives on. Children come from a forkserver that imported the heavy libraries once, so a
child starts in milliseconds; each child loads its models itself and frees everything when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import importlib.util
import json
import multiprocessing
import os
import resource
import shutil
import signal
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from common.context import TaskContext
from common.errors import JobCanceled, TaskInputError
from common.settings import Settings

log = structlog.get_logger(__name__)

_context: Any = None
#: In a child: the pipe to the parent (`forward` sends through it). None in the parent.
_channel: Connection | None = None
_send_lock = threading.Lock()

#: Error texts of allocators that ran out of memory (torch CPU/CUDA, numpy, Python).
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def start_method(preload: list[str]) -> None:
    """Use a forkserver that imported `preload` (torch, diffusers...) once; call before the first child."""
    global _context
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([m for m in preload if importlib.util.find_spec(m.split(".")[0]) is not None])
    _context = ctx


def warm_up() -> None:
    """Start the forkserver now (its preload takes seconds), so the first task does not wait for it."""
    ctx = _context or multiprocessing.get_context("forkserver")
    proc = ctx.Process(target=_noop, daemon=True)
    proc.start()
    proc.join()


def _noop() -> None:
    return None


def forward(target: str, *args: Any) -> None:
    """Call `module:function(*args)` in the worker process: directly there, through the pipe from a child.

    Prometheus metrics live in the parent; a child reports its observations with this.
    """
    if _channel is None:
        _call(target, args)
        return
    with _send_lock:
        _channel.send(("call", target, args))


def _call(target: str, args: tuple[Any, ...]) -> None:
    module, _, name = target.partition(":")
    getattr(importlib.import_module(module), name)(*args)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _OOM_MARKERS)


@dataclass(frozen=True)
class ChildSpec:
    """What the child needs to rebuild the task's context (all picklable)."""

    target: str  #: module:function of the registered task
    params_model: str  #: module:class of its params model
    params: dict[str, Any]
    job_id: str
    node_id: str
    service: str
    attempt: int
    settings: Settings
    job_inputs: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    memory_limit_bytes: int
    scratch: str


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _child_main(conn: Connection, spec: ChildSpec) -> None:
    """Entry point of the child: run the task, send events while it runs and one final message."""
    global _channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _channel = conn
    if spec.memory_limit_bytes:
        # RLIMIT_DATA covers heap and private anonymous maps (torch/numpy buffers): allocations past it fail
        resource.setrlimit(resource.RLIMIT_DATA, (spec.memory_limit_bytes, spec.memory_limit_bytes))
    tempfile.tempdir = spec.scratch  # the parent removes the scratch directory, even after a kill
    cancel = threading.Event()

    def listen() -> None:  # "stop" = stop at the next step boundary; EOF = the parent is gone
        try:
            while conn.recv() != "stop":
                continue
            cancel.set()
        except (EOFError, OSError):
            os._exit(3)

    threading.Thread(target=listen, name="parent-pipe", daemon=True).start()

    def emit(event: dict[str, Any]) -> None:
        with _send_lock:
            conn.send(("event", event))

    final: tuple[Any, ...]
    try:
        from common.storage import Storage

        fn, model = _resolve(spec.target), _resolve(spec.params_model)
        ctx = TaskContext(
            job_id=spec.job_id,
            node_id=spec.node_id,
            service=spec.service,
            attempt=spec.attempt,
            settings=spec.settings,
            storage=Storage(spec.settings),
            job_inputs=spec.job_inputs,
            inputs=spec.inputs,
            emit=emit,
            cancel=cancel,
        )
        output = dict(fn(ctx, model.model_validate(spec.params)) or {})
        json.dumps(output)  # outputs travel as JSON: fail here, not in Redis
        final = ("result", output)
    except JobCanceled:
        final = ("canceled",)
    except (TaskInputError, TypeError, ValueError) as e:
        final = ("input", str(e))
    except BaseException as e:  # every failure is reported to the parent, which fails or retries the node
        kind = "oom" if is_out_of_memory(e) else "error"
        final = (kind, f"{type(e).__name__}: {e}", traceback.format_exc(limit=20))
    with _send_lock:
        conn.send(final)
    conn.close()
    os._exit(0)  # skip interpreter teardown (torch threads, big heaps): the parent waits for this exit


class ChildProcess:
    """One running child, seen from the parent's event loop."""

    def __init__(self, spec: ChildSpec, on_event: Callable[[dict[str, Any]], None]) -> None:
        ctx = _context or multiprocessing.get_context("forkserver")
        self.conn: Connection
        self.conn, child_end = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_child_main, args=(child_end, spec), name=f"task-{spec.service}", daemon=True)
        self.child_end = child_end
        self.on_event = on_event
        self.final: tuple[Any, ...] | None = None
        self.done = asyncio.Event()
        self.scratch = spec.scratch
        self.loop = asyncio.get_running_loop()

    async def start(self) -> None:
        # In a thread: the first start waits for the forkserver's preload, which must not stall the event loop
        # (lease renewals, other jobs' events).
        await in_daemon_thread(self.proc.start)
        self.child_end.close()
        self.loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):  # the child exited (or was killed) without a final message
            self._closed()
            return
        if msg[0] == "event":
            self.on_event(msg[1])
        elif msg[0] == "call":
            try:
                _call(msg[1], msg[2])
            except Exception:
                log.exception("forwarded call failed", target=msg[1])
        else:
            self.final = msg
            self._closed()

    def _closed(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.conn.fileno())
        self.done.set()

    def request_stop(self) -> None:
        """Ask the task to stop at its next step boundary (training saves a checkpoint first)."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send("stop")

    async def kill(self) -> None:
        """SIGKILL and reap; nothing of the child survives (its scratch files are removed)."""
        if self.proc.is_alive():
            self.proc.kill()
        await self.reap()

    async def reap(self) -> None:
        await in_daemon_thread(self.proc.join, 10)
        self._closed()
        self.conn.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def exit_signal(self) -> int | None:
        code = self.proc.exitcode
        return -code if code is not None and code < 0 else None


def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """fn(*args) in a new daemon thread, as a future of the running loop. Unlike asyncio's default executor,
    an abandoned call (a canceled inline task, a child that is still starting) never holds up the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = context.run(fn, *args)
        except BaseException as e:  # handed to whoever awaits the future
            loop.call_soon_threadsafe(settle, None, e)
            return
        loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name=f"task-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return future


async def warm_up_async() -> None:
    await in_daemon_thread(warm_up)


def scratch_dir(settings: Settings, job_id: str, node_id: str) -> str:
    """A fresh directory for the child's temporary files (removed by the parent when the child ends)."""
    base = Path(settings.scratch_dir) if settings.scratch_dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"biplane-{job_id}-{node_id}-", dir=base)

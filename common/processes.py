"""Several processes of one plane on one host (`BIPLANE_PROCESSES`), so a many-core machine uses its cores.

With `processes` = 1 (the default, and what `make run` starts) the plane is one uvicorn process as before.
With N > 1, `python -m control|worker` becomes a small supervisor that starts N copies of itself:

- each copy binds the plane's port with SO_REUSEPORT (the kernel spreads connections over them) and runs the
  whole plane: its executor reads the plane's stream in the same consumer group under its own consumer name
  (`BIPLANE_INSTANCE` gets `-<index>` appended when set), so jobs spread over the copies as over separate hosts;
- their Prometheus metrics live in one folder (prometheus_client's multiprocess mode), so `/metrics` on the
  shared port answers the sum over every copy, whichever copy serves the scrape;
- SIGTERM/SIGINT to the supervisor is passed to every copy, each stops gracefully (running jobs are handed
  back to the stream) and the supervisor exits when all have; a copy that dies otherwise is started again,
  and a copy that keeps dying at start (a port in use, a bad setting) stops the whole plane with exit code 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from common.settings import Settings

log = structlog.get_logger(__name__)

#: Set by the supervisor in each copy's environment: which copy this is (0..N-1).
INDEX_VAR = "BIPLANE_PROCESS_INDEX"
#: prometheus_client's own variable: the folder where every copy keeps its metric values.
METRICS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
#: A copy that exits sooner than this after its start counts as failing to start.
START_SECONDS = 5.0
#: That many failed starts in a row stop the plane.
MAX_FAILED_STARTS = 5


def serve(module: str, app: Callable[[Settings], Any], settings: Settings, port: int, **options: Any) -> int:
    """Serve the plane built by app(settings) on port: in this process, or as N supervised copies."""
    if settings.processes == 1:
        uvicorn.run(app(settings), host=settings.host, port=port, log_config=None, **options)
        return 0
    if INDEX_VAR in os.environ:
        uvicorn.Server(uvicorn.Config(app(settings), log_config=None, **options)).run(
            sockets=[shared_socket(settings.host, port)]
        )
        return 0
    return Supervisor(module, settings).run()


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that the plane's other copies bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Starts, restarts and stops the N copies of `python -m <module>`."""

    def __init__(self, module: str, settings: Settings) -> None:
        self.module, self.settings = module, settings
        self.metrics_dir = Path(tempfile.mkdtemp(prefix=f"biplane-{module}-metrics-"))
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.failed_starts = 0
        self.stopping = False

    def env(self, index: int) -> dict[str, str]:
        env = {**os.environ, INDEX_VAR: str(index), METRICS_DIR_VAR: str(self.metrics_dir)}
        if self.settings.instance:
            env["BIPLANE_INSTANCE"] = f"{self.settings.instance}-{index}"
        return env

    def start(self, index: int) -> None:
        proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env(index))
        self.children[index] = (proc, time.monotonic())

    def stop(self, signum: int, _frame: object = None) -> None:
        if not self.stopping:
            log.info("stopping every copy", plane=self.module, processes=len(self.children))
        self.stopping = True
        for proc, _ in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("starting copies", plane=self.module, processes=self.settings.processes, metrics=str(self.metrics_dir))
        for index in range(self.settings.processes):
            self.start(index)
        try:
            return self._watch()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _watch(self) -> int:
        from prometheus_client import multiprocess

        code = 0
        while self.children:
            time.sleep(0.2)
            for index, (proc, started) in list(self.children.items()):
                if proc.poll() is None:
                    continue
                del self.children[index]
                multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))
                if self.stopping:
                    continue
                quick = time.monotonic() - started < START_SECONDS
                self.failed_starts = self.failed_starts + 1 if quick else 0
                if self.failed_starts >= MAX_FAILED_STARTS:
                    log.error(
                        "a copy keeps failing at start; stopping the plane", plane=self.module, exit=proc.returncode
                    )
                    code = 1
                    self.stop(signal.SIGTERM)
                    continue
                log.warning("a copy exited; starting it again", plane=self.module, index=index, exit=proc.returncode)
                time.sleep(min(5.0, 0.2 * 2**self.failed_starts))
                self.start(index)
        return code

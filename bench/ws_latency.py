"""Event publish -> WebSocket receive latency with 100 and 1,000 sockets on one control process.

Target: p99 <= 10 ms at 1,000 sockets. Two shapes: every socket follows its own job (one delivery per
event), and every socket follows the same job (one event fans out to all sockets).

The 1,000 client sockets share the two cores with the server, so the client does the least it can while
measuring: each socket is a bare asyncio protocol that stamps the arrival time of every chunk and keeps
the bytes; frames are parsed after the run. (A full client library costs ~40 us per message, which at
1,000 sockets on one job would be measured as ~40 ms of "latency" spent in the client.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import struct
import time

import uvloop
from websockets.frames import Frame, Opcode

from bench.stack import API_KEY, stack
from common.bridge import connect
from common.events import EventLog
from common.jobs import JobStore
from common.keys import Keys
from common.models.graph_schema import GraphDocument
from common.settings import Settings
from control.auth import owner_of
from infra.dev.devstack import free_port

GRAPH = GraphDocument.model_validate(
    {
        "schemaVersion": "biplane.graph.v1",
        "workflow": "bench",
        "nodes": [{"id": "a", "service": "prepare_assets", "plane": "control"}],
        "edges": [],
    }
)
ROUNDS = 50  #: event rounds, 100 ms apart
PER_ROUND = 50  #: jobs that emit one event per round (all of them when fewer)


def frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete unmasked server frames' payloads in data, and the incomplete rest."""
    out, i = [], 0
    while len(data) - i >= 2:
        n, head = data[i + 1] & 0x7F, 2
        if n == 126:
            if len(data) - i < 4:
                break
            n, head = struct.unpack_from("!H", data, i + 2)[0], 4
        elif n == 127:
            if len(data) - i < 10:
                break
            n, head = struct.unpack_from("!Q", data, i + 2)[0], 10
        if len(data) - i < head + n:
            break
        out.append(data[i + head : i + head + n])
        i += head + n
    return out, data[i:]


class Socket(asyncio.Protocol):
    """A WebSocket client that only stamps and stores what arrives once `recording` is set."""

    def __init__(self, path: str) -> None:
        self.path, self.buf, self.recording = path, b"", False
        self.chunks: list[tuple[float, bytes]] = []
        self.messages: asyncio.Queue[dict] = asyncio.Queue()
        self.open = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self.recording:
            self.chunks.append((time.time(), data))
            return
        self.buf += data
        if not self.open.done():
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.open.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            self.open.set_result(None)
            self.buf = rest
        payloads, self.buf = frames(self.buf)
        for p in payloads:
            self.messages.put_nowait(json.loads(p))

    def send(self, message: dict) -> None:
        self.transport.write(Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=True, extensions=[]))

    async def until(self, kind: str) -> None:
        while (await self.messages.get())["type"] != kind:
            pass

    def latencies(self) -> list[float]:
        """Receive time - event ts of every `log` event, a frame counted when its last byte arrived."""
        out, rest = [], self.buf
        for ts, data in self.chunks:
            payloads, rest = frames(rest + data)
            for p in payloads:
                msg = json.loads(p)
                if msg["type"] == "event" and msg["event"]["kind"] == "log":
                    out.append(ts - msg["event"]["ts"])
        return out


async def measure(url: str, redis_url: str, sockets: int, shared: bool) -> list[float]:
    s = Settings(redis_url=redis_url)
    redis = connect(s)
    keys = Keys(s.key_prefix)
    events = EventLog(redis, keys, s.event_maxlen)
    store = JobStore(redis, keys, events, s.job_ttl_seconds)
    jobs = [(await store.create(GRAPH, owner=owner_of(API_KEY))).job_id for _ in range(1 if shared else sockets)]
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    conns: list[Socket] = []
    for i in range(sockets):
        _, sock = await loop.create_connection(lambda: Socket(f"/ws?token={API_KEY}"), host, int(port))
        await sock.open
        await sock.until("ready")
        sock.send({"action": "subscribe", "jobId": jobs[i % len(jobs)]})
        await sock.until("subscribed")
        conns.append(sock)
    emitters = min(len(jobs), PER_ROUND)
    expected = ROUNDS * emitters * (sockets // len(jobs))
    for sock in conns:
        sock.recording = True
    for n in range(ROUNDS):
        for k in range(emitters):
            await events.emit(jobs[(n * emitters + k) % len(jobs)], "log", message=f"tick {n}")
        await asyncio.sleep(0.1)
    latencies: list[float] = []
    async with asyncio.timeout(60):
        while len(latencies) < expected:
            await asyncio.sleep(0.2)
            latencies = [x for sock in conns for x in sock.latencies()]
    for sock in conns:
        sock.transport.close()
    await redis.aclose()
    return latencies


def bare_server(port: int, sockets: int) -> None:
    """The floor: a process that only writes a timestamp to every connected socket, ROUNDS times."""

    async def serve() -> None:
        conns: list[asyncio.Transport] = []

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                conns.append(transport)  # type: ignore[arg-type]

        server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", port)
        while len(conns) < sockets:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        for _ in range(ROUNDS):
            stamp = f"{time.time():.6f}".encode().ljust(24)
            for t in conns:
                t.write(stamp)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        server.close()

    uvloop.run(serve())


async def measure_floor(sockets: int) -> list[float]:
    """Send -> receive of 24 bytes written by a bare uvloop server to every socket: what this machine's
    loopback TCP and scheduler cost before any WebSocket, Redis or Biplane code runs."""
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=bare_server, args=(port, sockets))
    server.start()
    got: list[tuple[float, bytes]] = []

    class Recv(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.append((time.time(), data))

    loop = asyncio.get_running_loop()
    for _ in range(sockets):
        for _attempt in range(100):
            try:
                await loop.create_connection(Recv, "127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
    await asyncio.to_thread(server.join, 60)
    return [t - float(d) for t, d in got if len(d) == 24]


def _row(name: str, lat: list[float], targeted: bool) -> tuple[str, str, str]:
    lat.sort()
    p50, p99 = statistics.median(lat) * 1000, lat[int(0.99 * (len(lat) - 1))] * 1000
    target = f"target p99 <= 10 ms: {'met' if p99 <= 10 else 'MISSED'}" if targeted else ""
    return name, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} deliveries)", target


def run() -> list[tuple[str, str, str]]:
    rows = []
    with stack() as st:
        url = st.start("control")
        for sockets in (100, 1000):
            for shared in (False, True):
                lat = uvloop.run(measure(url, st.env["BIPLANE_REDIS_URL"], sockets, shared))
                shape = "all on one job" if shared else "one job each"
                rows.append(_row(f"WS publish->receive, {sockets} sockets, {shape}", lat, sockets == 1000))
    rows.append(
        _row(
            "floor: bare uvloop server writes 24 B to 1000 sockets (no WS, no Redis)",
            uvloop.run(measure_floor(1000)),
            False,
        )
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))

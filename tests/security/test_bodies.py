"""Request bodies and connections as an attacker sends them: no body is read before authentication, every body
is bounded (control's memory stays flat under parallel 200 MB bodies), and slow headers or bodies are cut off."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from common.settings import Settings
from tests.support.processes import Plane

MB = 1024 * 1024
#: Parallel 200 MB bodies (a multiple of 4); BODY_PARALLEL raises it for `make soak`.
PARALLEL = int(os.environ.get("BODY_PARALLEL", "4"))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Peak:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.base, self.peak = pid, rss(pid), 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.base)


def exchange(port: int, head: bytes, body: Iterable[bytes] = (), timeout: float = 30) -> tuple[bytes, float]:
    """Send head then body chunks while a reader thread collects the answer; (answer, seconds to its first
    byte). Sending stops when the server closes the connection (it answered and will read no more)."""
    answer, first = bytearray(), [0.0]
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                if not answer:
                    first[0] = time.monotonic() - started
                answer.extend(chunk)
        except OSError as e:  # reset, timed out, or closed by us after the timeout: recorded in the answer
            answer.extend(f"\n[reader: {e!r}]".encode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sock.sendall(head)
        for chunk in body:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        assert answer or reader.is_alive(), "the server closed without answering"
    reader.join(timeout)
    sock.close()
    return bytes(answer), first[0]


def zeros(total: int, chunked: bool = False, size: int = MB) -> Iterator[bytes]:
    block = b"0" * size
    for _ in range(total // size):
        yield (f"{size:x}\r\n".encode() + block + b"\r\n") if chunked else block


def post_head(path: str, *, key: str | None, length: int | None, kind: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Type: {kind}"]
    lines += [f"Authorization: Bearer {key}"] if key else []
    lines += [f"Content-Length: {length}"] if length is not None else ["Transfer-Encoding: chunked"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("path", ["/api/jobs", "/api/render", "/api/train", "/api/voice"])
def test_no_body_is_read_before_authentication(control: Plane, path: str) -> None:
    port = control.port
    multipart = "multipart/form-data; boundary=zz"
    kind = multipart if path in ("/api/train", "/api/voice") else "application/json"
    # Headers only, announcing 300 MB: an answer can only come from a server that did not wait for the body.
    for key in (None, "wrong-key"):
        answer, seconds = exchange(port, post_head(path, key=key, length=300 * MB, kind=kind), timeout=10)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"unauthorized"' in answer and seconds < 2
    answer, _ = exchange(port, post_head(path, key=None, length=None, kind=kind), timeout=10)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_unauthenticated_300mb_body_costs_nothing(control: Plane) -> None:
    assert control.proc is not None
    with Peak(control.proc.pid) as peak:
        answer, seconds = exchange(control.port, post_head("/api/jobs", key=None, length=300 * MB), zeros(300 * MB))
    assert answer.startswith(b"HTTP/1.1 401") and seconds < 2, (answer[:200], seconds)
    assert peak.growth < 32 * MB, f"control grew by {peak.growth / MB:.0f} MB"


def test_parallel_200mb_bodies_with_a_key_keep_control_small(control: Plane) -> None:
    assert control.proc is not None
    answers: dict[str, bytes] = {}
    kinds = [
        ("jobs, declared", "/api/jobs", 200 * MB, False),
        ("render, declared", "/api/render", 200 * MB, False),
        ("jobs, chunked", "/api/jobs", None, True),
        ("render, chunked", "/api/render", None, True),
    ]
    sends = {f"{name} #{i}": (path, length, c) for i in range(PARALLEL // 4) for name, path, length, c in kinds}

    def send(name: str, path: str, length: int | None, chunked: bool) -> None:
        head = post_head(path, key="test-key-1", length=length)
        answers[name] = exchange(control.port, head, zeros(200 * MB, chunked=chunked))[0]

    with Peak(control.proc.pid) as peak:
        threads = [threading.Thread(target=send, args=(n, *a)) for n, a in sends.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    for name, answer in answers.items():
        assert answer.startswith(b"HTTP/1.1 413") and b'"too_large"' in answer, (name, answer[:300])
    assert len(answers) == len(sends) >= 4
    assert peak.growth < 48 * MB, f"control grew by {peak.growth / MB:.0f} MB (from {peak.base / MB:.0f} MB)"
    ok = httpx.post(f"{control.url}/api/jobs", json={"x": "y" * 1000}, headers={"Authorization": "Bearer test-key-1"})
    assert ok.status_code == 422, "an ordinary body under the limit still reaches the route"


def test_body_limit_follows_the_setting(settings: Settings, plane_factory: Callable[..., Plane]) -> None:
    control = plane_factory("control", settings.model_copy(update={"max_body_bytes": 4096}))
    auth = {"Authorization": "Bearer test-key-1"}
    big = httpx.post(f"{control.url}/api/render", json={"prompt": "x", "narration": "y" * 5000}, headers=auth)
    assert (big.status_code, big.json()["code"]) == (413, "too_large")
    small = httpx.post(f"{control.url}/api/render", json={"prompt": "x", "frames": 0}, headers=auth)
    assert small.status_code == 422, small.text


async def test_slow_headers_and_bodies_are_cut_off(settings: Settings, plane_factory: Callable[..., Plane]) -> None:
    s = settings.model_copy(update={"http_header_timeout_seconds": 1.0, "http_body_timeout_seconds": 1.0})
    control = plane_factory("control", s)

    async def slowloris() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", control.port)
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(100):  # one more header line every 0.2 s: never complete
                await asyncio.sleep(0.2)
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
                if reader.at_eof():
                    break
        except ConnectionError as e:
            return f"[writer: {e!r}]".encode(), time.monotonic() - started
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer, time.monotonic() - started

    async with asyncio.timeout(30):
        held = [asyncio.create_task(slowloris()) for _ in range(100)]
        await asyncio.sleep(0.5)
        assert httpx.get(f"{control.url}/health").status_code == 200, "ordinary requests still served"
        results = await asyncio.gather(*held)
    for answer, seconds in results:
        assert seconds < 4, f"a slow-header connection was held {seconds:.1f} s"
        assert answer.startswith(b"HTTP/1.1 408") or answer.startswith(b"[writer"), answer[:100]

    head = post_head("/api/jobs", key="test-key-1", length=1000)
    answer, seconds = await asyncio.to_thread(exchange, control.port, head + b'{"schemaVersion"', iter(()), 10)
    assert answer.startswith(b"HTTP/1.1 408") and b'"timeout"' in answer, answer[:300]
    assert seconds < 4

    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (s.http_max_header_bytes + 10) + b"\r\n\r\n"
    answer, _ = await asyncio.to_thread(exchange, control.port, huge, iter(()), 10)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]

"""Local servers for development and tests: a private redis-server and SeaweedFS (`weed mini`) S3.

`python -m infra.dev.devstack` (what `make run` calls) starts Redis + S3 + control + worker (+ frontend when
installed) in the foreground on loopback, prints the URLs and an API key, and stops them all on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll check() until it is truthy; fail early when proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, wait grace seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisServer:
    """A private redis-server on a loopback port (AOF optional; host: another local address to bind)."""

    dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    host: str = "127.0.0.1"
    #: required off loopback: Redis's protected mode refuses password-less clients that are not local
    password: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        args += ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _tcp_open(self.port, self.host), 10, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)


@dataclass
class S3Server:
    """SeaweedFS `weed mini`: a full S3 endpoint with auth, every port on 127.0.0.1 (or host)."""

    dir: Path
    access_key: str = "biplane"
    secret_key: str = "biplane-dev-secret"
    bucket: str = "biplane"
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> S3Server:
        exe = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        data, logs = self.dir / "data", self.dir / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        p = [free_port() for _ in range(9)]
        # Every port is set: -admin.ui=false still binds admin ports, and gRPC defaults to port+10000.
        args = [
            exe,
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={p[0]}",
            f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}",
            f"-volume.port.grpc={p[3]}",
            f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={p[6]}",
            "-admin.ui=false",
            f"-admin.port={p[7]}",
            f"-admin.port.grpc={p[8]}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-filer.localSocket={self.dir}/filer.sock",
            f"-s3.localSocket={self.dir}/s3.sock",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=256",  # one volume per bucket at least: tests make a bucket each
            f"-bucket={self.bucket}",
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._bucket_ready, 60, "weed mini S3", self.proc)
        return self

    def _bucket_ready(self) -> bool:
        import urllib3
        from minio import Minio

        client = Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=urllib3.PoolManager(retries=urllib3.Retry(total=0)),
        )
        return bool(client.bucket_exists(self.bucket))

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        for sock in self.dir.glob("*.sock"):
            sock.unlink(missing_ok=True)


def _tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _has_frontend() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("nicegui") is not None
        and (Path(__file__).resolve().parents[2] / "frontend" / "__main__.py").exists()  # the repository's root
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _up(name: str, url: str) -> bool:
    if name == "frontend":
        return _answers(url)
    return _answers(f"{url}/health") if name == "llm" else ready(url)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stack_env(redis: RedisServer, s3: S3Server) -> dict[str, str]:
    """The BIPLANE_* environment that points a plane at these servers (make run, benchmarks)."""
    return {
        "BIPLANE_REDIS_URL": redis.url,
        "BIPLANE_S3_ENDPOINT": s3.endpoint,
        "BIPLANE_S3_ACCESS_KEY": s3.access_key,
        "BIPLANE_S3_SECRET_KEY": s3.secret_key,
        "BIPLANE_BUCKET": s3.bucket,
    }


@contextlib.contextmanager
def services(root: Path, redis_port: int = 6390, s3_port: int = 8333) -> Iterator[dict[str, str]]:
    """Redis + S3 under root; yields the BIPLANE_* environment that points at them."""
    redis = RedisServer(root / "redis", port=redis_port, appendonly=True).start()
    s3 = S3Server(root / "s3", port=s3_port)
    try:
        s3.start()
        yield stack_env(redis, s3)
    finally:
        s3.stop()
        redis.stop()


def main() -> None:
    from common.config import load_or_exit

    root = Path(os.environ.get("BIPLANE_DEV_DIR", ".dev")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "api-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(24))
    api_key = key_file.read_text().strip()
    settings = load_or_exit()
    redis_port = int(os.environ.get("BIPLANE_DEV_REDIS_PORT", "6390"))
    s3_port = int(os.environ.get("BIPLANE_DEV_S3_PORT", "8333"))
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` / `biplane demo` stop the stack like Ctrl-C does
    with services(root, redis_port, s3_port) as env_s:
        env = {"BIPLANE_API_KEYS": api_key, "BIPLANE_API_KEY": api_key, **os.environ, **env_s}
        env.pop("PYTEST_CURRENT_TEST", None)  # NiceGUI reads it as "run in test mode"
        urls = {
            "control": f"http://127.0.0.1:{settings.control_port}",
            "worker": f"http://127.0.0.1:{settings.worker_port}",
        }
        if _has_frontend():
            urls["frontend"] = f"http://127.0.0.1:{settings.frontend_port}"
            env["BIPLANE_URL"] = urls["control"]  # the UI talks to this stack's control, on whatever port it got
        modules = {name: name for name in urls}
        if "llm_url" not in settings.model_fields_set:  # no LLM configured: serve the demo LLM (worker/llm.py)
            urls["llm"] = f"http://127.0.0.1:{settings.llm_port}"
            modules["llm"] = "worker.llm"
            env["BIPLANE_LLM_URL"] = f"{urls['llm']}/v1"
        try:
            for name in urls:
                procs.append(subprocess.Popen([sys.executable, "-m", modules[name]], env=env))
            for name, url in urls.items():  # the LLM's first start trains the demo LLMs (a minute or two on a CPU)
                wait_until(lambda n=name, u=url: _up(n, u), 600 if name == "llm" else 180, f"{name} ready")
            ui = f"  UI       {urls['frontend']}\n" if "frontend" in urls else ""
            print(
                f"\nBiplane is up in {time.monotonic() - started:.1f}s\n{ui}"
                f"  API      {urls['control']}  (OpenAPI docs: {urls['control']}/docs)\n"
                f"  worker   {urls['worker']}/ready\n"
                f"  LLM      {env.get('BIPLANE_LLM_URL', settings.llm_url)}  (generate_script)\n"
                f"  API key  {api_key}   (also in {key_file})\n"
                f"  Redis    {env_s['BIPLANE_REDIS_URL']}   S3 http://{env_s['BIPLANE_S3_ENDPOINT']}\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            print("a process exited; stopping the stack", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
        finally:
            for p in procs:  # all at once: each finishes its current step in parallel
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                stop_process(p, grace=15)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()

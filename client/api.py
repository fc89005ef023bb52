"""Python client for the control plane: REST (httpx) and the /ws protocol (websockets), typed with the
generated models. `AsyncClient` is the full client; `Client` is its blocking twin for scripts and the CLI.

    async with AsyncClient(url, api_key) as c:
        job = (await c.post_train(["a.png"], prompt="a cat", options={"steps": 100}))["jobId"]
        async for event in c.follow(job):      # reconnects and replays by seq
            print(event.kind, event.progress)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx

from common import paths
from common.jobs import FINAL_STATUSES
from common.models.artifact_schema import ArtifactMeta
from common.models.event_schema import Event
from common.models.job_schema import JobRecord


class RemoteError(Exception):
    """A 4xx/5xx answer: status, stable code, message and (for validation) the JSON pointer."""

    def __init__(self, status: int, code: str, message: str, pointer: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (at {pointer})" if pointer else ""))
        self.status, self.code, self.message, self.pointer = status, code, message, pointer


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {}
    raise RemoteError(
        resp.status_code, body.get("code", "error"), body.get("message", resp.text[:200]), body.get("pointer")
    )


def _files(field: str, paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        (field, (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream")) for p in paths
    ]


def _train_form(
    images: list[Path],
    prompt: str,
    options: dict[str, Any] | None,
    workflow: str,
    clips: list[Path] | None,
    transcripts: list[str] | None,
    narration: str | None,
    webhook: str | None,
    voice_options: dict[str, Any] | None,
    video_options: dict[str, Any] | None,
    topic: str | None = None,
    script_options: dict[str, Any] | None = None,
    captions: list[str] | None = None,
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    data = {"prompt": prompt, "workflow": workflow, "options": json.dumps(options or {})}
    files = _files("images", images)  # `<image-name>.txt` files among them are those images' captions
    if captions is not None:
        data["captions"] = json.dumps(captions)
    if clips:
        files += _files("clips", clips)
        data["transcripts"] = json.dumps(transcripts or [])
    if voice_options:
        data["voiceOptions"] = json.dumps(voice_options)
    if video_options:
        data["videoOptions"] = json.dumps(video_options)
    if narration:
        data["narration"] = narration
    if topic:  # studio: generate_script writes the narration and the video's prompt
        data["topic"] = topic
    if script_options:
        data["scriptOptions"] = json.dumps(script_options)
    if webhook:
        data["webhook"] = webhook
    return data, files


def artifact_path(job_id: str, artifact: ArtifactMeta) -> str:
    """The artifact's name relative to the job folder (`train_lora/samples/0001.png`), from its S3 key."""
    return paths.relative(job_id, artifact.key) or artifact.name or artifact.key


class AsyncClient:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        self.url, self.api_key = url.rstrip("/"), api_key
        self.http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.http.request(method, path, **kwargs)
        _raise_for(resp)
        return resp.json()

    async def post_train(
        self,
        images: list[Path],
        prompt: str,
        options: dict[str, Any] | None = None,
        workflow: str = "lora",
        clips: list[Path] | None = None,
        transcripts: list[str] | None = None,
        narration: str | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        voice_options: dict[str, Any] | None = None,
        video_options: dict[str, Any] | None = None,
        topic: str | None = None,
        script_options: dict[str, Any] | None = None,
        captions: list[str] | None = None,
    ) -> dict[str, Any]:
        """POST /api/train; returns the whole 202 body: jobId, status, links, estimateSeconds, warnings.
        studio with `topic`: the script (narration and the video's prompt) is written by generate_script.
        captions: one per image ("" = the prompt); or pass `<image-name>.txt` files among images instead."""
        data, files = _train_form(
            images,
            prompt,
            options,
            workflow,
            clips,
            transcripts,
            narration,
            webhook,
            voice_options,
            video_options,
            topic,
            script_options,
            captions,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(await self._json("POST", "/api/train", data=data, files=files, headers=headers))

    async def submit_voice(
        self, clips: list[Path], transcripts: list[str], options: dict[str, Any] | None = None
    ) -> str:
        data = {"transcripts": json.dumps(transcripts), "options": json.dumps(options or {})}
        return str((await self._json("POST", "/api/voice", data=data, files=_files("clips", clips)))["jobId"])

    async def submit_render(self, body: dict[str, Any]) -> str:
        return str((await self._json("POST", "/api/render", json=body))["jobId"])

    async def submit_story(
        self, topic: str, script: dict[str, Any] | None = None, video: dict[str, Any] | None = None
    ) -> str:
        """POST /api/story: generate_script on the topic, then render_video narrating the script."""
        body = {**(video or {}), "topic": topic, **({"script": script} if script else {})}
        return str((await self._json("POST", "/api/story", json=body))["jobId"])

    async def submit_graph(self, graph: dict[str, Any]) -> str:
        return str((await self._json("POST", "/api/jobs", json=graph))["jobId"])

    async def job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(await self._json("GET", f"/api/jobs/{job_id}"))

    async def jobs(
        self, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        params = {
            k: v
            for k, v in {"status": status, "workflow": workflow, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        page = await self._json("GET", "/api/jobs", params=params)
        return [JobRecord.model_validate(j) for j in page["items"]], page.get("nextCursor")

    async def cancel(self, job_id: str) -> None:
        await self._json("POST", f"/api/jobs/{job_id}/cancel")

    async def artifacts(self, job_id: str) -> list[ArtifactMeta]:
        page = await self._json("GET", f"/api/jobs/{job_id}/artifacts")
        return [ArtifactMeta.model_validate(a) for a in page["items"]]

    async def download(self, job_id: str, artifact: ArtifactMeta, directory: Path) -> Path:
        """Fetch one artifact through control, verify its sha256, write it under directory."""
        name = artifact.name or artifact.key.rsplit("/", 1)[-1]
        resp = await self.http.get(f"/api/jobs/{job_id}/artifacts/{name}")
        _raise_for(resp)
        if hashlib.sha256(resp.content).hexdigest() != artifact.sha256:
            raise RemoteError(502, "checksum_mismatch", f"{name}: sha256 differs from the manifest")
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(resp.content)
        return path

    async def capabilities(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/api/capabilities"))

    async def workflows(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", "/api/workflows"))["items"])

    async def follow(
        self,
        job_id: str,
        since: int = 0,
        *,
        reconnect: float = 60.0,
        snapshot: list[JobRecord] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Every event of the job after `since` until its final status. The WebSocket reconnects with backoff
        (for up to `reconnect` seconds in a row) and resumes after the last seq seen: no gap, no repeat."""
        import websockets

        ws_url = self.url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        last, backoff, lost_at = since, 0.2, None
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with websockets.connect(ws_url, max_size=2**22) as ws:
                    await ws.send(json.dumps({"action": "auth", "token": self.api_key}))
                    await ws.send(json.dumps({"action": "subscribe", "jobId": job_id, "since": last}))
                    lost_at, backoff = None, 0.2
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg["type"] == "error":
                            raise RemoteError(
                                404 if msg.get("code") == "not_found" else 400,
                                msg.get("code", "error"),
                                msg.get("message", ""),
                            )
                        if msg["type"] == "subscribed" and snapshot is not None:
                            snapshot.append(JobRecord.model_validate(msg["job"]))
                        if msg["type"] != "event":
                            continue
                        event = Event.model_validate(msg["event"])
                        if event.seq <= last:
                            continue
                        last = event.seq
                        yield event
                        if event.kind == "status" and event.status in FINAL_STATUSES:
                            return
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake) as e:
                lost_at = lost_at or loop.time()
                if loop.time() - lost_at > reconnect:
                    raise RemoteError(503, "unreachable", f"lost the control plane: {e!r}") from e
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


class Client:
    """Blocking client for scripts; follow() runs the async WebSocket follower in a private loop."""

    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        self.url, self.api_key, self.timeout = url, api_key, timeout

    def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            async with AsyncClient(self.url, self.api_key, self.timeout) as c:
                return await getattr(c, method)(*args, **kwargs)

        return asyncio.run(call())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "follow" or not hasattr(AsyncClient, name):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._run(name, *args, **kwargs)

    def follow(self, job_id: str, since: int = 0, reconnect: float = 60.0) -> Iterator[Event]:
        loop = asyncio.new_event_loop()
        client = AsyncClient(self.url, self.api_key, self.timeout)
        agen = client.follow(job_id, since, reconnect=reconnect)
        try:
            while True:
                try:
                    yield loop.run_until_complete(anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(agen.aclose())
            loop.run_until_complete(client.http.aclose())
            loop.close()

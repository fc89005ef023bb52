"""`GET /files/{job}/{name}`: artifacts streamed to the browser through control, so it needs no key and no S3."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from frontend.link import ControlLink

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Headers of control's answer passed on to the browser.
_PASS = ("content-type", "content-length", "x-checksum-sha256")


def file_url(job_id: str, name: str, *, download: bool = False) -> str:
    return f"/files/{job_id}/{quote(name)}" + ("?download=1" if download else "")


def mount(app: FastAPI, link: ControlLink) -> None:
    @app.get("/files/{job_id}/{name:path}", include_in_schema=False)
    async def artifact(job_id: str, name: str, download: bool = False) -> StreamingResponse:
        if not _JOB_ID.fullmatch(job_id) or ".." in name.split("/"):
            raise HTTPException(404, "no such artifact")
        http = link.client.http
        try:
            request = http.build_request("GET", f"/api/jobs/{job_id}/artifacts/{quote(name)}")
            resp = await http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise HTTPException(503, f"control plane unreachable: {e!r}") from e
        if resp.status_code != 200:
            await resp.aclose()
            raise HTTPException(resp.status_code if resp.status_code < 500 else 502, "artifact unavailable")
        headers = {k: v for k, v in resp.headers.items() if k.lower() in _PASS}
        filename = name.rsplit("/", 1)[-1].replace('"', "")
        headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{filename}"'
        headers["Cache-Control"] = "private, max-age=3600"  # artifacts never change once written
        return StreamingResponse(resp.aiter_raw(), headers=headers, background=BackgroundTask(resp.aclose))

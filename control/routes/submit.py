"""Job submission: POST /api/train, /api/voice (multipart uploads), /api/render and /api/jobs (JSON)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import FormData

from common import paths
from common.estimate import Estimate, assess
from common.executor import submit
from common.jobs import new_job_id
from common.keys import JOB_ID_PATTERN
from common.models.graph_schema import GraphDocument
from common.params import RenderVideoParams, TrainLoraParams, TrainVoiceParams
from common.references import check_graph
from control import metrics
from control.auth import rate_limit
from control.bodies import BoundedJsonRoute, parse_json
from control.deps import Control, ControlDep, OwnerDep
from control.egress import TargetRefused
from control.errors import ApiError, pointer_of
from control.uploads import Checked, check_files, delete_keys, read_form, store_files

router = APIRouter(prefix="/api", tags=["jobs"], route_class=BoundedJsonRoute)

IDEMPOTENCY_TTL = 24 * 3600  #: how long a key remembers its job (seconds)


class JobWarning(BaseModel):
    code: str = Field(description="long_job, no_worker")
    message: str


class Accepted(BaseModel):
    job_id: str = Field(alias="jobId")
    status: str
    links: dict[str, str]
    estimate_seconds: float | None = Field(alias="estimateSeconds", description="On the slowest alive workers")
    warnings: list[JobWarning] = Field(description="Accepted all the same: a long job, no worker for it")


ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"model": Accepted, "description": "Job accepted"}}


def _text(form: FormData, name: str, *, required: bool, limit: int) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(422, "invalid_request", f"{name} is required", pointer=f"/{name}")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", f"{name} must be text", pointer=f"/{name}")
    value = value.strip()
    if required and not value:
        raise ApiError(422, "invalid_request", f"{name} is empty", pointer=f"/{name}")
    if len(value) > limit:
        raise ApiError(422, "invalid_request", f"{name} is longer than {limit} characters", pointer=f"/{name}")
    return value


def _options(form: FormData, name: str, model: type[BaseModel], max_depth: int) -> dict[str, Any]:
    raw = _text(form, name, required=False, limit=64 * 1024) or "{}"
    data = parse_json(raw, name=name, max_depth=max_depth)
    try:
        return model.model_validate(data).model_dump(by_alias=True, exclude_unset=True)
    except ValidationError as e:
        err = e.errors()[0]
        raise ApiError(
            422, "invalid_request", f"{name}: {err['msg']}", pointer=f"/{name}{pointer_of(err['loc'])}"
        ) from e


def _transcripts(form: FormData, count: int, max_depth: int) -> list[str]:
    values = [v for v in form.getlist("transcripts") if isinstance(v, str)]
    if len(values) == 1 and values[0].lstrip().startswith("["):
        parsed = parse_json(values[0], name="transcripts", max_depth=max_depth)
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            raise ApiError(422, "invalid_request", "transcripts must be an array of strings", pointer="/transcripts")
        values = parsed
    values = [v.strip() for v in values]
    if len(values) != count:
        raise ApiError(
            422, "invalid_request", f"send one transcript per clip ({count}), got {len(values)}", pointer="/transcripts"
        )
    for i, v in enumerate(values):
        if not v or len(v) > 1000:
            raise ApiError(
                422, "invalid_request", f"transcript {i} must be 1-1000 characters", pointer=f"/transcripts/{i}"
            )
    return values


async def _webhook(c: Control, url: str | None) -> str | None:
    """The webhook URL when control may call it (checked again at each delivery: control/egress.py)."""
    if url and (not re.match(r"^https?://[^\s/]+", url) or len(url) > 2000):
        raise ApiError(422, "invalid_request", "webhook must be an http(s) URL", pointer="/webhook")
    if url:
        try:
            await c.egress.resolve(url)
        except TargetRefused as e:
            raise ApiError(422, "webhook_refused", str(e), pointer="/webhook") from e
    return url or None


def fingerprint(route: str, payload: Any) -> str:
    return hashlib.sha256(json.dumps([route, payload], sort_keys=True, default=str).encode()).hexdigest()


def _links(job_id: str) -> dict[str, str]:
    base = f"/api/jobs/{job_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "artifacts": f"{base}/artifacts",
        "cancel": f"{base}/cancel",
        "ws": "/ws",
    }


Review = tuple[Estimate | None, list[dict[str, str]]]


def _accepted(job_id: str, review: Review) -> JSONResponse:
    est, warnings = review
    body: dict[str, Any] = {"jobId": job_id, "status": "queued", "links": _links(job_id)}
    body |= {"estimateSeconds": round(est.seconds, 1) if est else None, "warnings": warnings}
    return JSONResponse(body, 202, headers={"Location": f"/api/jobs/{job_id}"})


async def _review(c: Control, graph: GraphDocument) -> Review:
    """The job's estimate on the alive workers and its warnings (never a refusal)."""
    manifests = await c.bridge.live_manifests(3 * c.settings.heartbeat_seconds)
    return assess(graph, manifests, c.settings.estimate_warn_seconds)


async def _accept(
    c: Control,
    owner: str,
    idem_key: str | None,
    fp: str,
    job_id: str,
    graph: GraphDocument,
    uploads: list[tuple[str, Checked]],
    webhook: str | None,
) -> JSONResponse:
    """References, idempotency, rate limit, uploads, record, enqueue: all or nothing."""
    await check_graph(c.store, owner, graph, job_id)
    review = await _review(c, graph)
    redis = c.store.redis
    idem = c.keys.idempotency(owner, idem_key) if idem_key else None
    if idem is not None:
        if len(idem_key or "") > 200:
            raise ApiError(422, "invalid_request", "Idempotency-Key is longer than 200 characters")
        if (seen := await redis.get(idem)) is not None:
            return _replay_idempotent(json.loads(seen), fp, review)
    await rate_limit(redis, c.keys, owner, c.settings.rate_limit_per_minute)
    if idem is not None and not await redis.set(
        idem, json.dumps({"fp": fp, "jobId": job_id}), nx=True, ex=IDEMPOTENCY_TTL
    ):
        return _replay_idempotent(json.loads(await redis.get(idem)), fp, review)  # a concurrent twin won
    try:
        await store_files(c.storage, uploads)
        try:
            job = await c.store.create(graph, owner=owner, job_id=job_id, webhook=webhook)
            await submit(c.bridge, job)
        except BaseException:
            await delete_keys(c.storage, [k for k, _ in uploads])
            raise
    except BaseException:
        if idem is not None:
            await redis.delete(idem)
        raise
    metrics.JOBS_SUBMITTED.labels(graph.workflow).inc()
    return _accepted(job_id, review)


def _replay_idempotent(seen: dict[str, str], fp: str, review: Review) -> JSONResponse:
    if seen["fp"] != fp:
        raise ApiError(422, "idempotency_mismatch", "this Idempotency-Key was used with a different request")
    return _accepted(seen["jobId"], review)


IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


@router.post("/train", status_code=202, responses=ACCEPTED, summary="Train a LoRA (or a whole studio job)")
async def train(request: Request, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None) -> JSONResponse:
    """Multipart: `images` (1-50 PNG/JPEG/WebP), `prompt`, `options` (JSON, train_lora params), `workflow`
    (`lora` or `studio`), `webhook`; for `studio` also `clips`, `transcripts`, `narration`,
    `voiceOptions` and `videoOptions` (JSON)."""
    s = c.settings
    form = await read_form(request, s)
    prompt = _text(form, "prompt", required=True, limit=s.max_prompt_chars)
    workflow = _text(form, "workflow", required=False, limit=32) or "lora"
    if workflow not in ("lora", "studio"):
        raise ApiError(422, "invalid_request", "workflow must be 'lora' or 'studio'", pointer="/workflow")
    lora = _options(form, "options", TrainLoraParams, s.max_json_depth)
    webhook = await _webhook(c, _text(form, "webhook", required=False, limit=2000))
    budget = [s.max_upload_total_bytes]
    images = await check_files(form, "images", "image", s, minimum=1, maximum=s.max_images, budget=budget)
    job_id = new_job_id()
    uploads = [(paths.input_key(job_id, "images", i, f.ext), f) for i, f in enumerate(images)]
    context: dict[str, Any] = {"prompt": prompt, "images": [k for k, _ in uploads]}
    resolution = TrainLoraParams.model_validate(lora).resolution
    params: dict[str, dict[str, Any]] = {
        "prepare_assets": {"resolution": resolution, "maxPixels": s.max_image_pixels},
        "train_lora": lora,
    }
    if workflow == "studio":
        clips = await check_files(form, "clips", "audio", s, minimum=1, maximum=s.max_clips, budget=budget)
        clip_uploads = [(paths.input_key(job_id, "clips", i, f.ext), f) for i, f in enumerate(clips)]
        uploads += clip_uploads
        context["clips"] = [k for k, _ in clip_uploads]
        context["transcripts"] = _transcripts(form, len(clips), s.max_json_depth)
        context["narration"] = _text(form, "narration", required=True, limit=2000)
        params["train_voice"] = _options(form, "voiceOptions", TrainVoiceParams, s.max_json_depth)
        params["render_video"] = _options(form, "videoOptions", RenderVideoParams, s.max_json_depth)
    graph = c.planner.build(workflow, params, context)
    fp = fingerprint(
        "train",
        {
            "context": {
                **context,
                "images": [f.sha256 for f in images],
                "clips": [f.sha256 for _, f in uploads[len(images) :]],
            },
            "params": params,
            "webhook": webhook,
        },
    )
    return await _accept(c, owner, idempotency_key, fp, job_id, graph, uploads, webhook)


@router.post("/voice", status_code=202, responses=ACCEPTED, summary="Fine-tune a voice")
async def voice(request: Request, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None) -> JSONResponse:
    """Multipart: `clips` (1-20 WAV/FLAC/OGG/MP3), `transcripts` (one per clip, repeated or a JSON array),
    `options` (JSON, train_voice params), `webhook`."""
    s = c.settings
    form = await read_form(request, s)
    options = _options(form, "options", TrainVoiceParams, s.max_json_depth)
    webhook = await _webhook(c, _text(form, "webhook", required=False, limit=2000))
    clips = await check_files(
        form, "clips", "audio", s, minimum=1, maximum=s.max_clips, budget=[s.max_upload_total_bytes]
    )
    transcripts = _transcripts(form, len(clips), s.max_json_depth)
    job_id = new_job_id()
    uploads = [(paths.input_key(job_id, "clips", i, f.ext), f) for i, f in enumerate(clips)]
    context = {"clips": [k for k, _ in uploads], "transcripts": transcripts}
    graph = c.planner.build("voice", {"train_voice": options}, context)
    fp = fingerprint(
        "voice",
        {"clips": [f.sha256 for f in clips], "transcripts": transcripts, "options": options, "webhook": webhook},
    )
    return await _accept(c, owner, idempotency_key, fp, job_id, graph, uploads, webhook)


class JobRef(BaseModel):
    job: str = Field(pattern=JOB_ID_PATTERN, description="A completed job of yours")


class RenderRequest(RenderVideoParams):
    """render_video params plus references to your earlier LoRA / voice jobs."""

    lora: JobRef | None = None  # type: ignore[assignment]
    voice: JobRef | None = None  # type: ignore[assignment]
    webhook: str | None = Field(None, max_length=2000)


async def _artifact_of(c: Control, owner: str, ref: JobRef, service: str, field: str, pointer: str) -> dict[str, str]:
    job = await c.owned_job(ref.job, owner)
    node = next((n for n in job.graph.nodes if n.service == service and n.status == "completed"), None)
    out = (node.output or {}) if node else {}
    value = out.get(field)
    key = value.get("key") if isinstance(value, dict) else value
    if not isinstance(key, str):
        raise ApiError(422, "invalid_request", f"job {ref.job} has no completed {service} output", pointer=pointer)
    return {"job": ref.job, "key": key}


@router.post("/render", status_code=202, responses=ACCEPTED, summary="Render a video")
async def render(
    body: RenderRequest, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None
) -> JSONResponse:
    params = body.model_dump(by_alias=True, exclude_unset=True, exclude={"webhook", "lora", "voice"})
    if body.lora is not None:
        params["lora"] = await _artifact_of(c, owner, body.lora, "train_lora", "lora", "/lora")
    if body.voice is not None:
        params["voice"] = await _artifact_of(c, owner, body.voice, "train_voice", "voiceDir", "/voice")
    context = {"prompt": body.prompt or "", "narration": body.narration}
    graph = c.planner.build("video", {"render_video": params}, context)
    fp = fingerprint("render", body.model_dump(mode="json"))
    return await _accept(c, owner, idempotency_key, fp, new_job_id(), graph, [], await _webhook(c, body.webhook))


@router.post("/jobs", status_code=202, responses=ACCEPTED, summary="Submit a whole graph document")
async def submit_graph(
    c: ControlDep,
    owner: OwnerDep,
    doc: Annotated[dict[str, Any], Body(description="A biplane.graph.v1 document")],
    webhook: Annotated[str | None, Query(max_length=2000)] = None,
    idempotency_key: IdemHeader = None,
) -> JSONResponse:
    manifests = await c.bridge.live_manifests(3 * c.settings.heartbeat_seconds)
    graph = c.planner.validate(doc, manifests)
    job_id = new_job_id()
    graph = graph.model_copy(update={"job_id": job_id})
    fp = fingerprint("jobs", [doc, webhook])
    return await _accept(c, owner, idempotency_key, fp, job_id, graph, [], await _webhook(c, webhook))

"""Submission forms: POST /api/train, /api/voice (multipart uploads), /api/render and /api/story (JSON)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import FormData

from common import paths
from common.jobs import new_job_id
from common.keys import JOB_ID_PATTERN
from common.params import GenerateScriptParams, RenderVideoParams, TrainLoraParams, TrainVoiceParams
from control.bodies import BoundedJsonRoute, parse_json
from control.captions import captions
from control.deps import Control, ControlDep, OwnerDep
from control.errors import ApiError, pointer_of
from control.planner import check_base_model, check_video_family, lora_family
from control.submission import ACCEPTED, IdemHeader, accept, fingerprint, webhook_url
from control.uploads import check_files, read_form

M = TypeVar("M", bound=BaseModel)

router = APIRouter(prefix="/api", tags=["jobs"], route_class=BoundedJsonRoute)


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


def _options(form: FormData, name: str, model: type[M], max_depth: int) -> M:
    """The form's JSON field `name` as a params model: the one check of these params before the task's own."""
    raw = _text(form, name, required=False, limit=64 * 1024) or "{}"
    data = parse_json(raw, name=name, max_depth=max_depth)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ApiError(
            422, "invalid_request", f"{name}: {err['msg']}", pointer=f"/{name}{pointer_of(err['loc'])}"
        ) from e


def _wire(params: BaseModel) -> dict[str, Any]:
    """Params as the graph carries them: the fields the user set, by their wire names."""
    return params.model_dump(by_alias=True, exclude_unset=True)


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


@router.post("/train", status_code=202, responses=ACCEPTED, summary="Train a LoRA (or a whole studio job)")
async def train(request: Request, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None) -> JSONResponse:
    """Multipart: `images` (1-50 PNG/JPEG/WebP, each optionally with a `<image-name>.txt` caption file),
    `captions` (one per image, repeated or a JSON array; "" = the prompt), `prompt`, `options` (JSON, train_lora
    params), `workflow` (`lora` or `studio`), `webhook`; for `studio` also `clips`, `transcripts`, `narration`
    (or `topic`, and generate_script writes the narration and the video's prompt; `scriptOptions` JSON),
    `voiceOptions` and `videoOptions` (JSON)."""
    s = c.settings
    form = await read_form(request, s)
    prompt = _text(form, "prompt", required=True, limit=s.max_prompt_chars)
    workflow = _text(form, "workflow", required=False, limit=32) or "lora"
    if workflow not in ("lora", "studio"):
        raise ApiError(422, "invalid_request", "workflow must be 'lora' or 'studio'", pointer="/workflow")
    lora = _options(form, "options", TrainLoraParams, s.max_json_depth)
    check_base_model(s, lora.base_model, "/options/baseModel")
    webhook = await webhook_url(c, _text(form, "webhook", required=False, limit=2000))
    budget = [s.max_upload_total_bytes]
    images = await check_files(form, "images", "image", s, minimum=1, maximum=s.max_images, budget=budget)
    names = [f.file.filename or "" for f in images]
    per_image = await captions(form, names, s.max_prompt_chars, s.max_json_depth)
    job_id = new_job_id()
    uploads = [(paths.input_key(job_id, "images", i, f.ext), f) for i, f in enumerate(images)]
    context: dict[str, Any] = {"prompt": prompt, "images": [k for k, _ in uploads]}
    if per_image is not None:
        context["captions"] = per_image
    params: dict[str, dict[str, Any]] = {
        "prepare_assets": {"resolution": lora.resolution, "imageFit": lora.image_fit, "maxPixels": s.max_image_pixels},
        "train_lora": _wire(lora),
    }
    if workflow == "studio":
        clips = await check_files(form, "clips", "audio", s, minimum=1, maximum=s.max_clips, budget=budget)
        clip_uploads = [(paths.input_key(job_id, "clips", i, f.ext), f) for i, f in enumerate(clips)]
        uploads += clip_uploads
        context["clips"] = [k for k, _ in clip_uploads]
        context["transcripts"] = _transcripts(form, len(clips), s.max_json_depth)
        topic = _text(form, "topic", required=False, limit=s.max_prompt_chars)
        context["narration"] = _text(form, "narration", required=topic is None, limit=2000)
        if topic is not None:
            context["topic"] = topic
            script = _wire(_options(form, "scriptOptions", GenerateScriptParams, s.max_json_depth))
            params["generate_script"] = {**script, "prompt": topic}
        params["train_voice"] = _wire(_options(form, "voiceOptions", TrainVoiceParams, s.max_json_depth))
        params["render_video"] = _wire(_options(form, "videoOptions", RenderVideoParams, s.max_json_depth))
        check_video_family(s, lora_family(s, params["train_lora"]), "/options/baseModel")
    graph = c.planner.build(workflow, params, context, script="generate_script" in params)
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
    return await accept(c, owner, idempotency_key, fp, job_id, graph, uploads, webhook)


@router.post("/voice", status_code=202, responses=ACCEPTED, summary="Fine-tune a voice")
async def voice(request: Request, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None) -> JSONResponse:
    """Multipart: `clips` (1-20 WAV/FLAC/OGG/MP3), `transcripts` (one per clip, repeated or a JSON array),
    `options` (JSON, train_voice params), `webhook`."""
    s = c.settings
    form = await read_form(request, s)
    options = _wire(_options(form, "options", TrainVoiceParams, s.max_json_depth))
    webhook = await webhook_url(c, _text(form, "webhook", required=False, limit=2000))
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
    return await accept(c, owner, idempotency_key, fp, job_id, graph, uploads, webhook)


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


async def _lora_family(c: Control, owner: str, ref: JobRef) -> str | None:
    """The family of the base model a LoRA job trained on (its output's baseModel; SD 1.x before there was one)."""
    job = await c.owned_job(ref.job, owner)
    node = next((n for n in job.graph.nodes if n.service == "train_lora" and n.status == "completed"), None)
    base = (node.output or {}).get("baseModel") if node else None
    return str(base.get("family")) if isinstance(base, dict) else "sd15"


async def _video_params(c: Control, owner: str, body: RenderRequest, exclude: set[str]) -> dict[str, Any]:
    """render_video params of a request, with its LoRA / voice job references resolved to artifacts."""
    params = body.model_dump(by_alias=True, exclude_unset=True, exclude={"webhook", "lora", "voice", *exclude})
    if body.lora is not None:
        params["lora"] = await _artifact_of(c, owner, body.lora, "train_lora", "lora", "/lora")
        check_video_family(c.settings, await _lora_family(c, owner, body.lora), "/lora")
    if body.voice is not None:
        params["voice"] = await _artifact_of(c, owner, body.voice, "train_voice", "voiceDir", "/voice")
    return params


@router.post("/render", status_code=202, responses=ACCEPTED, summary="Render a video")
async def render(
    body: RenderRequest, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None
) -> JSONResponse:
    params = await _video_params(c, owner, body, set())
    context = {"prompt": body.prompt or "", "narration": body.narration}
    graph = c.planner.build("video", {"render_video": params}, context)
    fp = fingerprint("render", body.model_dump(mode="json"))
    return await accept(c, owner, idempotency_key, fp, new_job_id(), graph, [], await webhook_url(c, body.webhook))


class ScriptOptions(GenerateScriptParams):
    """generate_script params; the topic is the request's."""

    prompt: None = Field(None, exclude=True)


class StoryRequest(RenderRequest):
    """A topic: generate_script writes the stage prompt and the narration, render_video films and narrates them.
    `prompt` / `narration`, when given, replace what the script says."""

    topic: str = Field(min_length=1, max_length=1000, description="What the clip is about")
    script: ScriptOptions | None = Field(None, description="tone, persona, length, model, temperature")


@router.post("/story", status_code=202, responses=ACCEPTED, summary="Write a script on a topic and film it")
async def story(body: StoryRequest, c: ControlDep, owner: OwnerDep, idempotency_key: IdemHeader = None) -> JSONResponse:
    topic = body.topic.strip()
    if not topic or len(topic) > c.settings.max_prompt_chars:
        raise ApiError(
            422, "invalid_request", f"topic must be 1-{c.settings.max_prompt_chars} characters", pointer="/topic"
        )
    script = body.script.model_dump(by_alias=True, exclude_unset=True) if body.script else {}
    params = {
        "generate_script": {**script, "prompt": topic},
        "render_video": await _video_params(c, owner, body, {"topic", "script"}),
    }
    graph = c.planner.build("story", params, {"prompt": topic, "topic": topic})
    fp = fingerprint("story", body.model_dump(mode="json"))
    return await accept(c, owner, idempotency_key, fp, new_job_id(), graph, [], await webhook_url(c, body.webhook))

"""`biplane`: the command line over the control plane's REST and WebSocket API.

Exit codes: 0 completed (or success), 1 failed / unreachable, 2 usage or rejected request, 3 canceled.
Configuration: --url / BIPLANE_URL and --api-key / BIPLANE_API_KEY.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from client import config_cmd, models_cmd, views
from client.api import AsyncClient
from client.console import EXIT, ctx, emit, err, fail, out, run
from client.follow import follow_and_render
from client.sizing import duration, merge_options, options_text
from common.models.job_schema import JobRecord

app = typer.Typer(
    help="Biplane: train LoRAs and voices, render videos.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(models_cmd.app, name="models")

IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".webp"}
AUDIO_TYPES = {".wav", ".flac", ".ogg", ".mp3"}


@app.callback()
def main(
    url: Annotated[str, typer.Option(envvar="BIPLANE_URL", help="Control plane URL")] = "http://127.0.0.1:8000",
    api_key: Annotated[str, typer.Option(envvar="BIPLANE_API_KEY", help="API key")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    ctx.url, ctx.api_key, ctx.json = url, api_key, as_json


def files_in(directory: Path, kinds: set[str], what: str) -> list[Path]:
    if not directory.is_dir():
        fail(f"{directory} is not a directory of {what}")
    found = sorted(p for p in directory.iterdir() if p.suffix.lower() in kinds)
    if not found:
        fail(f"no {what} ({', '.join(sorted(kinds))}) in {directory}")
    return found


def caption_files(images: list[Path]) -> list[Path]:
    """kohya-style captions: `<image-name>.txt` beside an image."""
    return list(dict.fromkeys(t for p in images if (t := p.with_suffix(".txt")).is_file()))


def options_arg(value: str | None, flag: str = "--options") -> dict[str, Any]:
    """JSON inline or @file."""
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{flag} is not JSON: {e.msg}")
    if not isinstance(data, dict):
        fail(f"{flag} must be a JSON object")
    return data


def transcripts_arg(path: Path | None, clips: list[Path]) -> list[str]:
    if path is None or not path.is_file():
        fail("--transcripts FILE is required: one line per clip, in file-name order")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) != len(clips):
        fail(f"{path} has {len(lines)} transcripts for {len(clips)} clips")
    return lines


def submitted(job_id: str, follow_job: bool, extra: dict[str, Any] | None = None) -> None:
    if follow_job:
        raise typer.Exit(follow_and_render(job_id))
    data = {"jobId": job_id, "status": "queued", **(extra or {})}
    emit(data, f"job [bold]{job_id}[/bold] queued  (biplane follow {job_id})")


@app.command()
def up() -> None:
    """Start the whole stack locally in the foreground (what `make run` does)."""
    from infra.dev.devstack import main as devstack

    devstack()


@app.command()
def train(
    images: Annotated[
        Path, typer.Option(help="Directory of 1-50 PNG/JPEG/WebP images; a <image-name>.txt beside one is its caption")
    ],
    prompt: Annotated[str, typer.Option(help="What the images show (1-1000 characters)")],
    options: Annotated[str | None, typer.Option(help="train_lora params as JSON or @file.json")] = None,
    workflow: Annotated[str, typer.Option(help="lora or studio")] = "lora",
    clips: Annotated[Path | None, typer.Option(help="studio: directory of voice clips")] = None,
    transcripts: Annotated[Path | None, typer.Option(help="studio: one transcript per line, per clip")] = None,
    narration: Annotated[str | None, typer.Option(help="studio: text the video narrates")] = None,
    topic: Annotated[
        str | None, typer.Option(help="studio: write the script for me (narration and video prompt) on this topic")
    ] = None,
    script_options: Annotated[
        str | None, typer.Option(help="studio: generate_script params (tone, persona, length...) as JSON")
    ] = None,
    voice_options: Annotated[str | None, typer.Option(help="studio: train_voice params as JSON or @file")] = None,
    video_options: Annotated[str | None, typer.Option(help="studio: render_video params as JSON or @file")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Show progress until the job ends")] = False,
) -> None:
    """Train a LoRA from images (or, with --workflow studio, a LoRA + voice + narrated video)."""
    if workflow not in ("lora", "studio"):
        fail("--workflow must be lora or studio")
    image_files = files_in(images, IMAGE_TYPES, "images")
    image_files += caption_files(image_files)
    clip_files: list[Path] | None = None
    lines: list[str] | None = None
    if workflow == "studio":
        if clips is None or not (narration or topic):
            fail("--workflow studio needs --clips, --transcripts and --narration (or --topic)")
        clip_files = files_in(clips, AUDIO_TYPES, "audio clips")
        lines = transcripts_arg(transcripts, clip_files)

    given = {
        "train_lora": options_arg(options),
        "train_voice": options_arg(voice_options, "--voice-options"),
        "render_video": options_arg(video_options, "--video-options"),
    }

    async def call() -> dict[str, Any]:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            # Options not given start from what the alive workers recommend (a short job on a CPU demo worker).
            recommended = (await c.capabilities()).get("recommended") or {}
            sent = {svc: merge_options(svc, recommended.get(svc, {}), opts) for svc, opts in given.items()}
            if recommended.get("train_lora"):
                shown = options_text(sent["train_lora"])
                err.print(f"train_lora options (the alive workers' recommendation, then yours): {shown}")
            return await c.post_train(
                image_files,
                prompt,
                sent["train_lora"],
                workflow,
                clip_files,
                lines,
                narration,
                voice_options=sent["train_voice"] if workflow == "studio" else None,
                video_options=sent["render_video"] if workflow == "studio" else None,
                topic=topic if workflow == "studio" else None,
                script_options=options_arg(script_options, "--script-options") or None,
            )

    accepted = run(call())
    if accepted.get("estimateSeconds") is not None:
        err.print(f"estimated duration: {duration(accepted['estimateSeconds'])} on the alive workers")
    for warning in accepted.get("warnings") or []:
        err.print(f"[yellow]warning:[/yellow] {escape(warning['message'] + ' [' + warning['code'] + ']')}")
    submitted(accepted["jobId"], follow, {k: accepted.get(k) for k in ("estimateSeconds", "warnings")})


@app.command()
def voice(
    clips: Annotated[Path, typer.Option(help="Directory of voice clips (WAV/FLAC/OGG/MP3)")],
    transcripts: Annotated[Path, typer.Option(help="One transcript per line, per clip in name order")],
    options: Annotated[str | None, typer.Option(help="train_voice params as JSON or @file.json")] = None,
    follow: Annotated[bool, typer.Option("--follow")] = False,
) -> None:
    """Fine-tune a text-to-speech voice on clips + transcripts."""
    clip_files = files_in(clips, AUDIO_TYPES, "audio clips")
    lines = transcripts_arg(transcripts, clip_files)

    async def call() -> str:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            return await c.submit_voice(clip_files, lines, options_arg(options))

    submitted(run(call()), follow)


@app.command()
def render(
    prompt: Annotated[str, typer.Option()],
    lora_job: Annotated[str | None, typer.Option(help="A completed lora/studio job whose LoRA to use")] = None,
    voice_job: Annotated[str | None, typer.Option(help="A completed voice/studio job whose voice narrates")] = None,
    narration: Annotated[str | None, typer.Option()] = None,
    frames: Annotated[int, typer.Option(min=1, max=128)] = 16,
    fps: Annotated[int, typer.Option(min=1, max=60)] = 8,
    width: Annotated[int, typer.Option()] = 512,
    height: Annotated[int, typer.Option()] = 512,
    options: Annotated[str | None, typer.Option(help="More render_video params as JSON")] = None,
    follow: Annotated[bool, typer.Option("--follow")] = False,
) -> None:
    """Render a video (AnimateDiff) with an optional LoRA and narrated voice."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "frames": frames,
        "fps": fps,
        "width": width,
        "height": height,
        **options_arg(options),
    }
    if lora_job:
        body["lora"] = {"job": lora_job}
    if voice_job:
        body["voice"] = {"job": voice_job}
    if narration:
        body["narration"] = narration

    async def call() -> str:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            return await c.submit_render(body)

    submitted(run(call()), follow)


@app.command()
def story(
    topic: Annotated[str, typer.Argument(help="What the clip is about")],
    tone: Annotated[str, typer.Option(help="Tone of the narration")] = "casual",
    persona: Annotated[str | None, typer.Option(help="Who writes: 'a travel writer'")] = None,
    length: Annotated[int, typer.Option(min=3, max=300, help="Seconds of narration")] = 20,
    model: Annotated[str | None, typer.Option(help="LLM model (default: BIPLANE_LLM_MODEL of control)")] = None,
    temperature: Annotated[float, typer.Option(min=0, max=2)] = 0.4,
    lora_job: Annotated[str | None, typer.Option(help="A completed lora/studio job whose LoRA to use")] = None,
    voice_job: Annotated[str | None, typer.Option(help="A completed voice/studio job whose voice narrates")] = None,
    options: Annotated[str | None, typer.Option(help="render_video params as JSON or @file.json")] = None,
    follow: Annotated[bool, typer.Option("--follow")] = False,
) -> None:
    """Write a script on a topic with the LLM (generate_script), then render and narrate it."""
    script: dict[str, Any] = {"tone": tone, "length": length, "temperature": temperature}
    script |= {k: v for k, v in (("persona", persona), ("model", model)) if v}
    video = options_arg(options)
    if lora_job:
        video["lora"] = {"job": lora_job}
    if voice_job:
        video["voice"] = {"job": voice_job}

    async def call() -> str:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            # Options not given start from what the alive workers recommend (a short clip on a CPU demo worker).
            recommended = (await c.capabilities()).get("recommended") or {}
            return await c.submit_story(
                topic, script, merge_options("render_video", recommended.get("render_video", {}), video)
            )

    submitted(run(call()), follow)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option()] = None,
    workflow: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """Your jobs, newest first."""

    async def call() -> list[JobRecord]:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            return (await c.jobs(status, workflow, limit))[0]

    records = run(call())
    emit([j.model_dump(by_alias=True, mode="json") for j in records], views.jobs_table(records))


@app.command()
def status(job_id: str) -> None:
    """One job: status and every node."""

    async def call() -> JobRecord:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            return await c.job(job_id)

    j = run(call())
    emit(j.model_dump(by_alias=True, mode="json"), views.job_table(j))
    if j.error:
        err.print(f"[red]{escape(j.error)}[/red]")
    raise typer.Exit(EXIT.get(j.status, 0))


@app.command()
def follow(job_id: str) -> None:
    """Live progress bars per node (step, loss, ETA) until the job ends; exit 0/1/3 by its status."""
    raise typer.Exit(follow_and_render(job_id))


@app.command()
def cancel(job_id: str) -> None:
    """Ask a job to stop."""

    async def call() -> None:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            await c.cancel(job_id)

    run(call())
    emit({"jobId": job_id, "status": "canceling"}, f"cancel requested for {job_id}")


@app.command()
def artifacts(
    job_id: str,
    download: Annotated[Path | None, typer.Option(help="Download every artifact here (sha256 verified)")] = None,
) -> None:
    """List a job's artifacts; with --download, fetch them and verify each sha256."""

    async def call() -> tuple[list[Any], list[Path]]:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            items = await c.artifacts(job_id)
            paths = [await c.download(job_id, a, download) for a in items] if download else []
            return items, paths

    items, paths = run(call())
    emit([a.model_dump(by_alias=True, mode="json") for a in items], views.artifacts_table(job_id, items))
    for p in paths:
        err.print(f"downloaded {p} (sha256 ok)")


@app.command()
def capabilities() -> None:
    """Services by plane, the live workers and the options they recommend."""

    async def call() -> dict[str, Any]:
        async with AsyncClient(ctx.url, ctx.api_key) as c:
            return await c.capabilities()

    caps = run(call())
    emit(caps, views.services_table(caps))
    if not ctx.json:
        for service, options in (caps.get("recommended") or {}).items():
            out.print(f"recommended for {service} on the alive workers: {escape(options_text(options))}")
    if caps.get("warning"):
        err.print(f"[yellow]{caps['warning']}[/yellow]")


@app.command()
def demo(
    output: Annotated[Path, typer.Option(help="Where the results go")] = Path("demo-output"),
    inputs: Annotated[Path, typer.Option(help="Where the generated sample inputs go")] = Path("demo-output/inputs"),
    dev_dir: Annotated[Path, typer.Option(help="State dir of a stack this command starts")] = Path(".dev"),
) -> None:
    """Run a studio job on generated samples (starting the stack if needed); download and explain the results."""
    from client import demo as d

    images, clips, transcripts = d.sample_inputs(inputs)
    with d.stack_running(ctx.url, dev_dir) as started_key:
        if started_key:
            ctx.api_key = ctx.api_key or started_key
        elif not ctx.api_key and (dev_dir / "api-key").exists():
            ctx.api_key = (dev_dir / "api-key").read_text().strip()
        clip_files = sorted(clips.iterdir())
        lines = transcripts_arg(transcripts, clip_files)

        async def submit() -> str:
            async with AsyncClient(ctx.url, ctx.api_key) as c:
                accepted = await c.post_train(
                    sorted(images.iterdir()),
                    "a sample shape, flat colours",
                    d.OPTIONS,
                    "studio",
                    clip_files,
                    lines,
                    d.NARRATION,
                    voice_options=d.VOICE_OPTIONS,
                    video_options=d.VIDEO_OPTIONS,
                )
            return str(accepted["jobId"])

        job_id = run(submit())
        err.print(f"studio job {job_id} submitted")
        code = follow_and_render(job_id)
        if code != 0:
            raise typer.Exit(code)

        async def fetch() -> list[Path]:
            async with AsyncClient(ctx.url, ctx.api_key) as c:
                return [await c.download(job_id, a, output) for a in await c.artifacts(job_id)]

        paths = run(fetch())
    table = Table("what it is", "bytes", "file")
    table.columns[2].overflow = "fold"  # full paths, even on a narrow or non-terminal stdout
    for p in sorted(paths):
        table.add_row(d.describe(p), f"{p.stat().st_size:,}", str(p))
    out.print(table)


if __name__ == "__main__":
    sys.exit(app())

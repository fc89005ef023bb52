"""New job: images (+ clips, transcripts and narration for `studio`), prompt, workflow and training options.

Files go browser -> UI server (checked by type and size in the browser, then again here) into a private
temporary folder, and from there to control with the job; control sniffs and decodes them once more.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from nicegui import events, ui
from nicegui.elements.mixins.value_element import ValueElement

from client import sizing
from client.api import RemoteError
from client.format import human_bytes
from frontend import option_fields
from frontend import options as form_options
from frontend.link import ControlLink

log = structlog.get_logger(__name__)

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".webp")
CAPTION_TYPES = (".txt",)  #: `<image-name>.txt` beside an image is its caption (as kohya users keep them)
AUDIO_TYPES = (".wav", ".flac", ".ogg", ".mp3")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".txt": "text/plain"}
_AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
#: A rejected file's reason, from Quasar's `failedPropValidation`.
_REJECTED = {
    "accept": "not an accepted file type",
    "max-file-size": "too large",
    "max-total-size": "over the total size limit",
    "max-files": "over the file count limit",
    "filter": "filtered out",
}
_HEADINGS = {
    401: "The control plane refused this UI's API key (check BIPLANE_API_KEY)",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported file type",
    422: "Please check the form",
    429: "Too many submissions: wait a minute and try again",
}
#: How often the form looks at the link's capabilities (which the link refreshes every 10 s).
FOLLOW_SECONDS = 2.0


def explain(e: RemoteError) -> str:
    """One sentence for a refused submission: what went wrong, where, and the server's own words."""
    heading = _HEADINGS.get(e.status, "The control plane refused the job")
    where = f" (field {e.pointer.lstrip('/')})" if e.pointer else ""
    return f"{heading}{where}: {e.message} [{e.status} {e.code}]"


@dataclass
class Staged:
    name: str
    path: Path
    size: int
    transcript: str = ""


class StagedFiles:
    """Files received from the browser, kept in a private temporary folder until the job is submitted."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = root, kind
        self.items: list[Staged] = []
        self._n = 0

    async def add(self, file: Any) -> Staged:  # a nicegui FileUpload
        self._n += 1
        folder = self.root / f"{self.kind}-{self._n:03d}"
        folder.mkdir(parents=True)
        path = folder / Path(file.name).name
        await file.save(path)
        item = Staged(path.name, path, path.stat().st_size)
        self.items.append(item)
        return item

    def remove(self, names: list[str]) -> None:
        for name in names:
            item = next((i for i in self.items if i.name == name), None)
            if item is not None:
                self.items.remove(item)
                shutil.rmtree(item.path.parent, ignore_errors=True)

    def clear(self) -> None:
        self.remove([i.name for i in list(self.items)])

    @property
    def total(self) -> int:
        return sum(i.size for i in self.items)


class NewJobForm:
    def __init__(self, link: ControlLink) -> None:
        self.link, self.settings = link, link.settings
        self._tmp = tempfile.TemporaryDirectory(prefix="biplane-ui-")
        root = Path(self._tmp.name)
        self.images, self.clips = StagedFiles(root, "image"), StagedFiles(root, "clip")
        self.recommended = sizing.recommended(link.capabilities, "train_lora")
        self.specs = form_options.from_schema(form_options.service_schema(link.capabilities, "train_lora"))
        self.options = form_options.defaults(self.specs, self.recommended)
        self.inputs: dict[str, ValueElement] = {}
        self.build()
        ui.timer(FOLLOW_SECONDS, self._follow_workers)
        ui.context.client.on_delete(self._tmp.cleanup)

    # --- layout ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        s = self.settings
        with ui.column().classes("w-full max-w-3xl mx-auto q-pa-md gap-4"):
            ui.label("New job").classes("text-h5")
            self.workflow = ui.toggle(
                {"lora": "LoRA", "studio": "Studio: LoRA + voice + video"},
                value="lora",
                on_change=self._refresh_estimate,
            ).props('data-testid=workflow aria-label="Workflow" no-caps')
            self.prompt = (
                ui.textarea("Prompt", placeholder="a photo of sks cat, studio light")
                .props(f"data-testid=prompt outlined autogrow maxlength={s.max_prompt_chars} counter")
                .classes("w-full")
            )
            self.prominent_options = ui.column().classes("w-full gap-2")
            limit = human_bytes(s.max_upload_file_bytes)
            ui.label(
                f"Images: 1 to {s.max_images} PNG, JPEG or WebP files, each up to {limit}; "
                "a <image-name>.txt file is that image's caption (else the prompt)."
            ).classes("text-body2")
            self.image_upload = self._uploader(
                "Images", "images", IMAGE_TYPES + CAPTION_TYPES, _MIME, self.images, 2 * s.max_images, self._on_image
            )
            self.image_summary = ui.label().props("data-testid=images-summary").classes("text-caption")
            with ui.column().classes("w-full gap-2").bind_visibility_from(self.workflow, "value", value="studio"):
                self._studio_section()
            bases = (self.link.capabilities or {}).get("baseModels") or []
            self.base_model = (
                ui.select(
                    {b["name"]: f"{b['name']} ({b['family']}, {b['reference']})" for b in bases},
                    value=bases[0]["name"] if bases else None,
                    label="Base model",
                )
                .props('data-testid=base-model outlined dense aria-label="Base model"')
                .classes("w-full")
            )
            self.base_model.set_visibility(len(bases) > 1)  # one base model: nothing to choose
            with ui.expansion("Advanced options", icon="tune").classes("w-full").props("data-testid=advanced"):
                self.recommendation = ui.label().props("data-testid=recommendation").classes("text-caption")
                self.option_grid = ui.grid().classes("w-full gap-2 grid-cols-1 sm:grid-cols-2")
                self._build_options()
            self.estimate = ui.label().props("data-testid=estimate aria-live=polite").classes("w-full text-body2")
            self.error = (
                ui.label()
                .classes("w-full text-negative bg-red-1 q-pa-sm rounded-borders")
                .props("data-testid=submit-error role=alert")
            )
            self.error.set_visibility(False)
            self.submit_button = ui.button("Start training", icon="play_arrow", on_click=self.submit).props(
                "data-testid=submit color=primary"
            )
        self._refresh_summary()
        self._show_recommendation()

    def _build_options(self) -> None:
        """One input per option the service's schema describes, bounded as the schema says."""
        self.inputs = option_fields.build(
            self.specs,
            self.options,
            prominent=self.prominent_options,
            advanced=self.option_grid,
            on_change=self._on_option,
        )

    def _studio_section(self) -> None:
        s = self.settings
        ui.label(f"Voice clips: 1 to {s.max_clips} WAV, FLAC, OGG or MP3 files, one transcript each.").classes(
            "text-body2"
        )
        self.clip_upload = self._uploader(
            "Voice clips", "clips", AUDIO_TYPES, _AUDIO_MIME, self.clips, s.max_clips, self._on_clip
        )
        self.transcripts = ui.column().classes("w-full gap-1").props("data-testid=transcripts")
        self.narration = (
            ui.textarea("Narration (spoken in the video by the trained voice)")
            .props("data-testid=narration outlined autogrow maxlength=2000")
            .classes("w-full")
        )
        self.topic = (
            ui.input(
                "Or write the script for me: a topic",
                placeholder="a paper plane over a harbour town",
            )
            .props(f"data-testid=topic outlined maxlength={s.max_prompt_chars} clearable")
            .classes("w-full")
            .tooltip("The LLM (generate_script) writes the narration and the video's prompt on this topic")
        )

    def _uploader(
        self,
        label: str,
        testid: str,
        exts: tuple[str, ...],
        mimes: dict[str, str],
        staged: StagedFiles,
        max_files: int,
        on_upload: Any,
    ) -> ui.upload:
        accept = ",".join([*exts, *sorted(set(mimes.values()))])
        up = (
            ui.upload(
                label=label,
                multiple=True,
                auto_upload=True,
                max_file_size=self.settings.max_upload_file_bytes,
                max_files=max_files,
                on_upload=on_upload,
            )
            .props(f'accept="{accept}" data-testid={testid} aria-label="{label}"')
            .classes("w-full")
        )
        up.on("rejected", self._on_rejected, js_handler=_JS_REJECTED)
        up.on("removed", lambda e: self._on_removed(staged, e.args), js_handler=_JS_NAMES)
        return up

    # --- uploads ------------------------------------------------------------------------------------------------
    async def _on_image(self, e: events.UploadEventArguments) -> None:
        await self._receive(e, self.images, IMAGE_TYPES + CAPTION_TYPES)

    async def _on_clip(self, e: events.UploadEventArguments) -> None:
        if await self._receive(e, self.clips, AUDIO_TYPES):
            self._render_transcripts()

    async def _receive(self, e: events.UploadEventArguments, staged: StagedFiles, exts: tuple[str, ...]) -> bool:
        """The server-side twin of the browser's checks: extension and size (control sniffs the bytes)."""
        name, size = e.file.name, e.file.size()
        if not name.lower().endswith(exts):
            ui.notify(f"{name}: only {', '.join(exts)} files are accepted", type="negative")
            return False
        if size > self.settings.max_upload_file_bytes:
            ui.notify(f"{name} is {human_bytes(size)}; the limit is {human_bytes(self.settings.max_upload_file_bytes)}")
            return False
        await staged.add(e.file)
        self._refresh_summary()
        return True

    def _on_rejected(self, e: events.GenericEventArguments) -> None:
        for name, reason in e.args or []:
            ui.notify(f"{name}: {_REJECTED.get(reason, reason)}", type="warning")

    def _on_removed(self, staged: StagedFiles, names: list[str]) -> None:
        staged.remove(list(names or []))
        self._refresh_summary()
        if staged is self.clips:
            self._render_transcripts()

    def _image_count(self) -> int:
        return sum(not i.name.lower().endswith(CAPTION_TYPES) for i in self.images.items)

    def _refresh_summary(self) -> None:
        n = self._image_count()
        captions = len(self.images.items) - n
        text = f"{n} image{'s' if n != 1 else ''} ready ({human_bytes(self.images.total)})" if n else "No images yet."
        self.image_summary.set_text(text + (f", {captions} with a caption file" if captions else ""))
        self._refresh_estimate()

    # --- fitting the job to the workers ------------------------------------------------------------------------
    def _show_recommendation(self) -> None:
        caps = self.link.capabilities
        if not self.recommended:
            self.recommendation.set_text("No worker recommends options yet: these are the service's defaults.")
            return
        shown = sizing.options_text(self.recommended)
        self.recommendation.set_text(f"Recommended by the alive workers ({sizing.describe_workers(caps)}): {shown}.")

    def _follow_workers(self) -> None:
        """Workers come and go and measure as they work: until the user changes an option, the form follows the
        current recommendation; the estimate always does."""
        caps = self.link.capabilities
        specs = form_options.from_schema(form_options.service_schema(caps, "train_lora"))
        untouched = self.options == form_options.defaults(self.specs, self.recommended)
        if specs != self.specs and untouched:  # control answered (or changed) after the form was built
            self.specs = specs
            self.options.clear()
            self.options.update(form_options.defaults(specs, self.recommended))
            self._build_options()
        latest = sizing.recommended(caps, "train_lora")
        if latest != self.recommended and untouched:
            self.recommended = latest
            for wire, value in form_options.defaults(self.specs, latest).items():
                self.inputs[wire].value = value  # through the element, so the page shows it at once
            self._show_recommendation()
        self._refresh_estimate()

    def _on_option(self, e: events.ValueChangeEventArguments) -> None:
        """A recommended preview cadence follows the steps the user picks (as in `biplane train`) until the user
        sets a cadence of their own."""
        if e.sender is self.inputs.get("steps") and "sampleEvery" in self.inputs:
            before, after = self._cadence(e.previous_value), self._cadence(e.value)
            if after is not None and self.options.get("sampleEvery") == before:
                self.inputs["sampleEvery"].value = after
        self._refresh_estimate()

    def _cadence(self, steps: Any) -> int | None:
        """The recommended preview cadence for this many steps (None: no recommended cadence, or no steps)."""
        try:
            n = int(float(steps))  # an event's previous value is the element's model value, possibly text
        except (TypeError, ValueError):
            return None
        if "sampleEvery" not in self.recommended or n < 1:
            return None
        return int(sizing.merge_options("train_lora", self.recommended, {"steps": n})["sampleEvery"])

    def _refresh_estimate(self) -> None:
        if not hasattr(self, "estimate"):
            return  # a change handler that fires while the form is still being built
        options = self._lora_options()
        text, over = sizing.estimate_text(self.workflow.value, options, self._image_count(), self.link.capabilities)
        self.estimate.set_text(text)
        self.estimate.classes(replace="w-full text-body2 " + ("text-warning" if over else "text-grey-8"))

    def _lora_options(self) -> dict[str, Any]:
        """The recommended options the form does not show (preview denoising steps), then the form's own (empty
        fields left out: the service's defaults apply; problems() has checked the rest)."""
        hidden = {k: v for k, v in self.recommended.items() if k not in self.specs}
        shown = form_options.sent(self.specs, self.options)
        base = (
            {"baseModel": self.base_model.value} if getattr(self, "base_model", None) and self.base_model.value else {}
        )
        return hidden | shown | base

    def _render_transcripts(self) -> None:
        self.transcripts.clear()
        with self.transcripts:
            for i, clip in enumerate(self.clips.items):
                ui.input(f"Transcript of {clip.name}").bind_value(clip, "transcript").props(
                    f"data-testid=transcript-{i} outlined dense maxlength=1000"
                ).classes("w-full")

    # --- submit -------------------------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What the form can tell before asking control (control checks all of it again)."""
        out = []
        if not (self.prompt.value or "").strip():
            out.append("Write a prompt.")
        if not 1 <= self._image_count() <= self.settings.max_images:
            out.append(f"Add 1 to {self.settings.max_images} images.")
        out += form_options.problems(self.specs, self.options)
        if self.workflow.value == "studio":
            if not self.clips.items:
                out.append("Add at least one voice clip.")
            missing = [c.name for c in self.clips.items if not c.transcript.strip()]
            if missing:
                out.append(f"Write the transcript of {', '.join(missing)}.")
            if not (self.narration.value or "").strip() and not (self.topic.value or "").strip():
                out.append("Write the narration, or a topic for the script.")
        return out

    def show_error(self, text: str | None) -> None:
        self.error.set_text(text or "")
        self.error.set_visibility(bool(text))

    async def submit(self) -> None:
        problems = self.problems()
        if problems:
            self.show_error(" ".join(problems))
            return
        self.show_error(None)
        studio = self.workflow.value == "studio"
        caps = self.link.capabilities
        self.submit_button.props("loading")
        try:
            accepted = await self.link.client.post_train(
                [i.path for i in self.images.items],
                prompt=self.prompt.value.strip(),
                options=self._lora_options(),
                workflow=self.workflow.value,
                clips=[c.path for c in self.clips.items] if studio else None,
                transcripts=[c.transcript.strip() for c in self.clips.items] if studio else None,
                narration=(self.narration.value or "").strip() or None if studio else None,
                topic=(self.topic.value or "").strip() or None if studio else None,
                voice_options=sizing.recommended(caps, "train_voice") if studio else None,
                video_options=sizing.recommended(caps, "render_video") if studio else None,
            )
        except RemoteError as err:
            self.show_error(explain(err))
            return
        except httpx.HTTPError as err:
            self.show_error(f"The control plane is unreachable ({type(err).__name__}); try again in a moment.")
            return
        finally:
            self.submit_button.props(remove="loading")
        ui.navigate.to(f"/jobs/{accepted['jobId']}")


#: Quasar passes File objects, which do not serialise: send names (and the failed check) instead.
_JS_NAMES = "(files) => emit(files.map((f) => f.name))"
_JS_REJECTED = "(entries) => emit(entries.map((r) => [r.file.name, r.failedPropValidation]))"


async def page(link: ControlLink) -> None:
    # Start from the workers alive now, not those of the link's last refresh; a slow control does not hold
    # the page up (the form follows the recommendation when it comes, see NewJobForm._follow_workers).
    try:
        async with asyncio.timeout(FOLLOW_SECONDS):
            await link.refresh_capabilities()
    except TimeoutError:
        log.warning("capabilities slow to answer; the form starts from the service's defaults")
    NewJobForm(link)

"""Params models of the built-in services, shared by the planner (control) and the tasks that run them.

They live in common/ so control validates data-plane params without importing torch. Wire names are
camelCase (`learningRate`); Python names snake_case.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class Params(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PrepareAssetsParams(Params):
    """Decode, orient, crop and resize the uploaded images; check audio clips and transcripts."""

    resolution: int = Field(512, ge=32, le=2048, multiple_of=8, description="Square training size in px")
    image_fit: Literal["crop", "resize"] = Field("crop", description="Centre crop, or squash the whole image")
    max_pixels: int = Field(64_000_000, ge=1, description="Reject images larger than this (decompression bombs)")


class TrainLoraParams(Params):
    """LoRA on the UNet attention projections of a Stable Diffusion (1.x or XL) base model."""

    base_model: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$",
        description="One of the deployment's base models (capabilities `baseModels`); default: the first",
    )
    steps: int = Field(500, ge=1, le=100_000)
    rank: int = Field(16, ge=1, le=256)
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; default = rank")
    learning_rate: float = Field(1e-4, gt=0, le=1)
    resolution: int = Field(512, ge=32, le=2048, multiple_of=8)
    batch_size: int = Field(1, ge=1, le=64)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    precision: Precision = Field("auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU")
    gradient_checkpointing: bool = Field(
        False, description="Recompute UNet activations in the backward pass: less memory, about 20-30% slower"
    )
    optimizer: Literal["adamw", "adamw8bit"] = Field(
        "adamw",
        description="adamw8bit: bitsandbytes' 8-bit AdamW (less optimizer memory) on a CUDA worker that has it "
        "installed (biplane[gpu]); elsewhere AdamW is used and the output says so",
    )
    noise_offset: float = Field(
        0.0, ge=0, le=1, description="Offset noise (e.g. 0.05-0.1): lets the LoRA learn very dark or bright images"
    )
    snr_gamma: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Min-SNR loss weighting with this gamma (5 is the usual value); none = plain MSE",
    )
    image_fit: Literal["crop", "resize"] = Field(
        "crop",
        description="How images become square: crop = centre crop (keeps proportions, may cut edges), "
        "resize = squash the whole image (keeps everything, distorts proportions)",
    )
    cache_latents: bool = Field(True, description="Encode latents and text embeddings once")
    sample_every: int = Field(100, ge=0, description="Preview image every N steps; 0 = only the final sample")
    checkpoint_every: int = Field(100, ge=0, description="Training checkpoint to S3 every N steps; 0 = never")
    sample_steps: int = Field(20, ge=1, le=200, description="Denoising steps of preview/sample images")
    baseline: bool = Field(True, description="Measure the loss on a fixed set before and after training (probeLoss)")
    trigger_word: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^\S(.*\S)?$",
        description="Prepended to every caption (and the sample prompt) unless the text already starts with it",
    )


class TrainVoiceParams(Params):
    """SpeechT5 text-to-speech fine-tune with a learned speaker embedding."""

    steps: int = Field(200, ge=1, le=100_000)
    mode: Literal["lora", "full"] = "lora"
    rank: int = Field(8, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(4, ge=1, le=64)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    precision: Precision = "auto"
    checkpoint_every: int = Field(100, ge=0)
    sample_text: str | None = Field(None, max_length=1000, description="Text of the sample WAV")


class ArtifactRef(Params):
    """Points at an artifact of an earlier job (or of this job when job is omitted)."""

    job: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    key: str | None = Field(None, max_length=512, pattern=r"^jobs/[A-Za-z0-9_-]{1,64}/\S+$")


class RenderVideoParams(Params):
    """AnimateDiff frames with the job's LoRA, H.264 MP4, optional narration in the trained voice."""

    prompt: str | None = Field(None, max_length=1000, description="Default: the job's prompt")
    negative_prompt: str | None = Field(None, max_length=1000)
    frames: int = Field(16, ge=1, le=128)
    fps: int = Field(8, ge=1, le=60)
    width: int = Field(512, ge=32, le=2048, multiple_of=8)
    height: int = Field(512, ge=32, le=2048, multiple_of=8)
    steps: int = Field(25, ge=1, le=200, description="Denoising steps")
    guidance_scale: float = Field(7.5, ge=0, le=30)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    lora_scale: float = Field(1.0, ge=0, le=4)
    narration: str | None = Field(None, max_length=2000, description="Default: the job's narration")
    lora: ArtifactRef | None = None
    voice: ArtifactRef | None = None
    precision: Precision = "auto"

    @model_validator(mode="after")
    def _even(self) -> RenderVideoParams:
        if self.width % 2 or self.height % 2:  # yuv420p needs even sizes (multiple_of=8 already implies it)
            raise ValueError("width and height must be even")
        return self


class GenerateScriptParams(Params):
    """A short clip's stage prompt and narration from an LLM (the original's script.generateScript)."""

    prompt: str | None = Field(None, min_length=1, max_length=1000, description="The topic; default: the job's prompt")
    tone: str = Field("casual", min_length=1, max_length=64)
    persona: str | None = Field(None, max_length=200, description="Who writes: 'a travel writer'")
    length: int = Field(20, ge=3, le=300, description="Seconds of narration")
    model: str | None = Field(None, max_length=200, description="Default: BIPLANE_LLM_MODEL")
    temperature: float = Field(0.4, ge=0, le=2)


class PublishArtifactsParams(Params):
    """Write jobs/<id>/manifest.json listing every artifact with its sha256."""


class GetManifestParams(Params):
    """The merged capability manifest (services by plane, live workers) into the job's outputs."""

    include_params: bool = Field(False, description="Include each service's params JSON Schema (large)")


#: Built-in services: name -> (plane, params model).
CATALOG: dict[str, tuple[Literal["control", "data"], type[Params]]] = {
    "prepare_assets": ("control", PrepareAssetsParams),
    "train_lora": ("data", TrainLoraParams),
    "train_voice": ("data", TrainVoiceParams),
    "render_video": ("data", RenderVideoParams),
    "publish_artifacts": ("control", PublishArtifactsParams),
    "get_manifest": ("control", GetManifestParams),
    "generate_script": ("control", GenerateScriptParams),
}

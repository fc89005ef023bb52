"""Demo models: tiny configs, random weights from a fixed seed, local tokenizers; built once per directory.

They let the whole pipeline run for real without any download; their outputs are noise. Two processes
may race to build them: the build holds a file lock and moves a finished directory into place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Bump when a builder changes: directories of another version are rebuilt.
VERSION = 1
#: The tiny SDXL is built apart, on first use (most jobs never need it).
SDXL_VERSION = 1
SEED = 1234
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoModels:
    """Directories of the demo models under one root."""

    root: Path

    @property
    def sd(self) -> Path:
        return self.root / "sd"

    @property
    def sdxl(self) -> Path:
        return self.root / "sdxl"

    @property
    def motion_adapter(self) -> Path:
        return self.root / "motion-adapter"

    @property
    def tts(self) -> Path:
        return self.root / "speecht5-tts"

    @property
    def vocoder(self) -> Path:
        return self.root / "speecht5-hifigan"

    def ready(self) -> bool:
        return _ready(self.root, VERSION)


def _ready(target: Path, version: int) -> bool:
    marker = target / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("version") == version


def _ensure(target: Path, version: int, build: Callable[[Path], None]) -> None:
    """Build into target unless a finished build of this version is there (a locked, staged, atomic build)."""
    if _ready(target, version):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the loser of a race waits here, then finds the build done
        if _ready(target, version):
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(staging)
            (staging / MARKER).write_text(json.dumps({"version": version, "seed": SEED}))
            if target.exists():
                shutil.rmtree(target)  # an older version or a half-written directory
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def ensure_demo_models(root: Path, *, sdxl: bool = False) -> DemoModels:
    """Build the demo models into root unless a finished build of this version is there; with sdxl, the tiny
    SDXL too (root/sdxl)."""
    models = DemoModels(root)
    _ensure(root, VERSION, lambda staging: build_all(DemoModels(staging)))
    if sdxl:
        _ensure(models.sdxl, SDXL_VERSION, lambda staging: _seeded(build_sdxl, staging))
    return models


def _seeded(build: Callable[[Path], None], out: Path) -> None:
    import torch

    from worker.ml.device import setup_torch

    setup_torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        build(out)


def build_all(models: DemoModels) -> None:
    import torch

    from worker.ml.device import setup_torch

    setup_torch()  # quiet "Writing model shards" bars

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        build_sd(models.sd)
        build_motion_adapter(models.motion_adapter)
        build_tts(models.tts)
        build_vocoder(models.vocoder)


def build_sd(out: Path) -> None:
    """A Stable Diffusion pipeline directory (UNet 1.4 M params, VAE with 2x downsampling, 5-layer CLIP)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = _tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
    )
    vae = _tiny_vae()
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
    scheduler = _tiny_ddim()
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)


def _tiny_tokenizer() -> Any:
    """A CLIP BPE tokenizer trained here (model_max_length 77): what both demo pipelines tokenize with."""
    from transformers import CLIPTokenizer

    from worker.ml.tokenizers import train_clip_bpe

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(train_clip_bpe(Path(tmp)))


def _tiny_vae() -> Any:
    """A 2x-downsampling VAE with 4 latent channels (both demo pipelines)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def _tiny_clip_config(tokenizer: Any, **extra: Any) -> Any:
    """A 5-layer, 32-wide CLIP text encoder config over the tokenizer's vocabulary."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(tokenizer),
        **extra,
    )


def _tiny_ddim(**extra: Any) -> Any:
    """Stable Diffusion's DDIM schedule (scaled linear betas)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        **extra,
    )


def build_sdxl(out: Path) -> None:
    """A Stable Diffusion XL pipeline directory: two CLIP text encoders (the second with a projection, whose
    pooled output and the size/crop time ids condition the UNet), a 2x VAE, a UNet of two blocks."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids of 8 + the pooled text of 32
        cross_attention_dim=64,  # both encoders' hidden states side by side
        norm_num_groups=1,
    )
    vae = _tiny_vae()
    config = _tiny_clip_config(tokenizer, hidden_act="gelu", projection_dim=32)
    # DDIM as in the SD demo (SDXL ships Euler, whose numpy conversion warns under numpy 2 in diffusers 0.42).
    scheduler = _tiny_ddim(timestep_spacing="leading")
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(out)


def build_motion_adapter(out: Path) -> None:
    """An AnimateDiff motion adapter whose channels match the demo UNet."""
    from diffusers import MotionAdapter

    adapter: Any = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        motion_norm_num_groups=32,
        motion_num_attention_heads=4,
    )
    adapter.save_pretrained(out)


def build_tts(out: Path) -> None:
    """SpeechT5 text-to-speech (hidden 32, 2+2 layers, 80 mels, reduction 2) with its processor."""
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    from worker.ml.tokenizers import train_char_spm

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = SpeechT5Tokenizer(vocab_file=str(train_char_spm(Path(tmp, "spm_char.model"))))
        processor = SpeechT5Processor(feature_extractor=SpeechT5FeatureExtractor(), tokenizer=tokenizer)
        processor.save_pretrained(out)
    config = SpeechT5Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=32,
        speech_decoder_postnet_layers=2,
        speaker_embedding_dim=512,
        num_mel_bins=80,
        reduction_factor=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    SpeechT5ForTextToSpeech(config).save_pretrained(out)


def build_vocoder(out: Path) -> None:
    """A HiFi-GAN vocoder with hop 256 (4*4*4*4), matching the feature extractor's 16 ms at 16 kHz."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=80,
        sampling_rate=16000,
        upsample_initial_channel=64,
        upsample_rates=[4, 4, 4, 4],
        upsample_kernel_sizes=[8, 8, 8, 8],
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3], [1, 3]],
        normalize_before=False,
    )
    SpeechT5HifiGan(config).save_pretrained(out)

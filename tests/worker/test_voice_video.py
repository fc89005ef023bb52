"""train_voice and render_video in-process on demo models: real training, WAV and MP4 decoded back."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
import soundfile
from PIL import Image

from common.params import RenderVideoParams, TrainLoraParams, TrainVoiceParams
from tests.support.media import TRANSCRIPTS, put_clips, put_images
from tests.worker.conftest import Run

pytestmark = pytest.mark.ml


def test_voice_trains_and_speaks_longer_for_longer_text(run: Run, tmp_path: Path) -> None:
    from worker.ml.device import pick
    from worker.ml.models import resolve
    from worker.ml.voice import load_voice
    from worker.tasks.inputs import download_dir
    from worker.tasks.voice import train_voice

    context = {"clips": put_clips(run.storage, run.job_id), "transcripts": TRANSCRIPTS}
    ctx = run.ctx("voice", "train_voice", context={"prompt": "ignored"}, inputs={"prepare": context})
    out = train_voice(ctx, TrainVoiceParams(steps=30, learning_rate=3e-3, checkpoint_every=0))

    assert out["probeLoss"]["end"] <= 0.8 * out["probeLoss"]["start"], out["probeLoss"]
    assert [e["step"] for e in run.steps()] == list(range(1, 31))
    assert out["voiceDir"] == f"jobs/{run.job_id}/voice/voice/"
    names = {f["key"].removeprefix(out["voiceDir"]) for f in out["files"]}
    assert {"adapter_config.json", "adapter_model.safetensors", "speaker.safetensors", "voice.json"} <= names

    wav, rate = soundfile.read(io.BytesIO(run.storage.get_bytes(out["sample"]["key"])))
    assert rate == 16_000 and wav.ndim == 1 and len(wav) / rate == pytest.approx(out["sampleSeconds"], abs=1e-3)
    assert len(wav) / rate > 0.5 and abs(wav).max() > 0

    # The stored voice, loaded the way render_video loads it, speaks longer for longer text.
    paths = resolve(run.settings, "tts_model", "vocoder_model")
    voice_dir = download_dir(run.ctx("voice", "train_voice"), out["voiceDir"], tmp_path / "voice")
    voice = load_voice(paths.tts, paths.vocoder, voice_dir, pick(), demo=True)
    short, long = voice.synthesize("hello"), voice.synthesize("hello there, this sentence is a good deal longer")
    assert 0 < len(short) < len(long)


def _decode(data: bytes) -> tuple[int, int, int, float, list[str]]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        kinds = [s.type for s in container.streams]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, video.width, video.height, float(video.average_rate or 0), kinds


def test_video_with_lora_and_narration_in_the_trained_voice(run: Run) -> None:
    from worker.tasks.lora import train_lora
    from worker.tasks.video import render_video
    from worker.tasks.voice import train_voice

    prepared = {
        "images": put_images(run.storage, run.job_id, n=2, size=32),
        "prompt": "a photo of sks",
        "clips": put_clips(run.storage, run.job_id),
        "transcripts": TRANSCRIPTS,
        "narration": "Welcome to Biplane.",
    }
    fast = {"steps": 2, "checkpoint_every": 0}
    lora = train_lora(
        run.ctx("train_lora", "train_lora", inputs={"prepare": prepared}),
        TrainLoraParams(resolution=32, sample_every=0, sample_steps=1, **fast),
    )
    voice = train_voice(run.ctx("train_voice", "train_voice", inputs={"prepare": prepared}), TrainVoiceParams(**fast))
    p = RenderVideoParams(frames=6, fps=6, width=48, height=32, steps=2, guidance_scale=1.0)
    ctx = run.ctx("render", "render_video", context=prepared, inputs={"train_lora": lora, "train_voice": voice})
    out = render_video(ctx, p)

    assert out["usedLora"] == lora["lora"]["key"] and out["usedVoice"] == voice["voiceDir"]
    assert out["hasAudio"] is True and out["audioSeconds"] > 0.5 and out["codec"] in ("libx264", "mpeg4")
    frames, width, height, fps, kinds = _decode(run.storage.get_bytes(out["video"]["key"]))
    assert (frames, width, height, fps) == (6, 48, 32, 6.0)
    assert kinds == ["video", "audio"]
    with Image.open(io.BytesIO(run.storage.get_bytes(out["poster"]["key"]))) as poster:
        assert poster.format == "PNG" and poster.size == (48, 32)
    assert [e["step"] for e in run.steps("render")][:2] == [1, 2]


def test_video_without_narration_has_no_audio(run: Run) -> None:
    from worker.tasks.video import render_video

    p = RenderVideoParams(prompt="waves on a beach", frames=4, fps=12, width=32, height=32, steps=1)
    out = render_video(run.ctx("render", "render_video"), p)
    assert out["hasAudio"] is False and out["usedLora"] is None
    frames, width, height, fps, kinds = _decode(run.storage.get_bytes(out["video"]["key"]))
    assert (frames, width, height, fps, kinds) == (4, 32, 32, 12.0, ["video"])

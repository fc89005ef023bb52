"""train_voice: SpeechT5 fine-tune on the job's clips + transcripts; voice files under voice/, a sample WAV."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common.childproc import forward
from common.context import TaskContext
from common.errors import TaskInputError
from common.registry import Registry
from common.services import TrainVoiceParams
from worker.ml import checkpoints, loop, models
from worker.ml.device import peak_memory_bytes, pick, reset_peak_memory
from worker.ml.media import load_clip, wav_bytes
from worker.tasks import inputs

registry = Registry()

#: Longer clips are cut: SpeechT5's positions are bounded and memory grows with length.
MAX_CLIP_SECONDS = 20.0
VOICE_DIR = "voice/"


def _clips(ctx: TaskContext) -> tuple[list[Any], list[str]]:
    keys = inputs.value(ctx, "clips")
    transcripts = inputs.value(ctx, "transcripts")
    if not isinstance(keys, list) or not keys:
        raise TaskInputError("train_voice needs `clips`: a non-empty list of audio keys")
    if not isinstance(transcripts, list) or len(transcripts) != len(keys):
        raise TaskInputError("train_voice needs one transcript per clip")
    texts = [str(t).strip() for t in transcripts]
    if not all(texts):
        raise TaskInputError("every clip needs a non-empty transcript")
    clips = []
    for i, key in enumerate(keys):
        try:
            clips.append(load_clip(inputs.read(ctx, key, "clip"), max_seconds=MAX_CLIP_SECONDS))
        except TaskInputError as e:
            raise TaskInputError(f"clips[{i}]: {e.message}") from e
    return clips, texts


@registry.task(
    "train_voice",
    plane="data",
    params=TrainVoiceParams,
    outputs=("voiceDir", "files", "sample", "steps", "loss", "device", "peakMemoryBytes"),
    gpu=True,
    isolated=True,
    memory_options=("batchSize",),
)
def train_voice(ctx: TaskContext, p: TrainVoiceParams) -> dict[str, Any]:
    """SpeechT5 text-to-speech fine-tune with a learned speaker embedding."""
    from worker.ml.voice import VoiceTrainer, load_voice

    ctx.phase("loading-model")
    clips, texts = _clips(ctx)
    paths = models.resolve(ctx.settings, "tts_model", "vocoder_model")
    device = pick(p.precision)
    reset_peak_memory()
    ctx.log(f"train_voice ({p.mode}) on {device.name} in {device.precision}{' (demo model)' if paths.demo else ''}")
    trainer = VoiceTrainer(paths.tts, p, device, clips, texts)

    def probe() -> float:
        ctx.phase("baseline")
        return trainer.probe_loss()

    def checkpoint(step: int) -> None:
        ctx.phase("uploading")
        checkpoints.save(ctx, step, {**trainer.state(), "probeStart": probe_start})
        ctx.phase("training")

    start, probe_start = checkpoints.resume(ctx, trainer, probe)
    ctx.phase("training")
    result = loop.run(
        ctx, total=p.steps, start=start, step=trainer.step, checkpoint=checkpoint, checkpoint_every=p.checkpoint_every
    )
    probe_end = probe()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp, "voice")
        files = trainer.save(out_dir)
        ctx.phase("sampling")
        voice = load_voice(paths.tts, paths.vocoder, out_dir, device, paths.demo)  # what render_video will load
        speech = voice.synthesize(p.sample_text or texts[0])
        ctx.check_cancel()  # no final artifacts once canceled
        ctx.phase("uploading")
        metas = [
            ctx.put_artifact(VOICE_DIR + f.relative_to(out_dir).as_posix(), f, None).model_dump(
                by_alias=True, mode="json"
            )
            for f in files
        ]
    sample = ctx.put_artifact("sample.wav", wav_bytes(speech), "audio/wav")
    peak = peak_memory_bytes(device)
    forward("worker.metrics:peak_memory", ctx.service, peak)
    forward("worker.metrics:step_time", ctx.service, 0, result.median_step_seconds)
    return {
        "voiceDir": ctx.artifact_key(VOICE_DIR),
        "files": metas,
        "sample": sample.model_dump(by_alias=True, mode="json"),
        "sampleSeconds": round(len(speech) / 16_000, 3),
        "steps": p.steps,
        "startStep": start,
        "loss": result.last_loss,
        "probeLoss": {"start": probe_start, "end": probe_end},
        "stepSeconds": result.median_step_seconds,
        "device": device.name,
        "precision": device.precision,
        "demo": paths.demo,
        "peakMemoryBytes": peak,
    }

"""train_voice: SpeechT5 fine-tune on the job's clips + transcripts; voice files under voice/, a sample WAV."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common.context import TaskContext
from common.errors import TaskInputError
from common.params import TrainVoiceParams
from common.registry import Registry
from worker.ml.media import load_clip, wav_bytes
from worker.tasks import inputs, training

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


@registry.builtin(
    "train_voice",
    outputs=("voiceDir", "files", "sample", "steps", "loss", "device", "peakMemoryBytes"),
    gpu=True,
    isolated=True,
    memory_options=("batchSize",),
)
def train_voice(ctx: TaskContext, p: TrainVoiceParams) -> dict[str, Any]:
    """Load the clips, fine-tune with checkpoints, speak the sample, upload (described by its params)."""
    from worker.ml.voice import VoiceTrainer, load_voice

    ctx.phase("loading-model")
    clips, texts = _clips(ctx)
    run = training.begin(ctx, p.precision, "tts_model", "vocoder_model", mode=p.mode)
    trainer = VoiceTrainer(run.models.tts, p, run.device, clips, texts)

    def probe() -> float:
        ctx.phase("baseline")
        return trainer.probe_loss()

    trained = run.run(trainer, p, probe)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp, "voice")
        files = trainer.save(out_dir)
        ctx.phase("sampling")
        # what render_video will load
        voice = load_voice(run.models.tts, run.models.vocoder, out_dir, run.device, run.models.demo)
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
    return run.result(
        trained,
        p,
        0,
        voiceDir=ctx.artifact_key(VOICE_DIR),
        files=metas,
        sample=sample.model_dump(by_alias=True, mode="json"),
        sampleSeconds=round(len(speech) / 16_000, 3),
    )

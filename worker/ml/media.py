"""Audio and video files: decode clips to 16 kHz mono, write WAV, encode frames (+ audio) to MP4 with PyAV."""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import TaskInputError

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000


def load_clip(data: bytes, rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Any soundfile-decodable audio as float32 mono at `rate` (polyphase resampling), optionally truncated."""
    import numpy as np
    import soundfile
    from scipy.signal import resample_poly

    try:
        audio, sr = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise TaskInputError(f"audio does not decode: {e}") from e
    mono = audio.mean(axis=1)
    if max_seconds is not None:
        mono = mono[: int(max_seconds * sr)]
    if mono.size == 0:
        raise TaskInputError("audio clip is empty")
    if sr != rate:
        g = math.gcd(int(sr), rate)
        mono = resample_poly(mono, rate // g, int(sr) // g)
    return np.asarray(mono, dtype=np.float32)


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV."""
    import numpy as np
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, np.clip(audio, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def video_codec() -> str:
    """H.264 (libx264) when this PyAV build has it, else MPEG-4 part 2 (every build has that)."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


@dataclass(frozen=True)
class Mp4:
    data: bytes
    codec: str
    audio_codec: str | None


def encode_mp4(frames: np.ndarray, fps: int, audio: np.ndarray | None = None, rate: int = SAMPLE_RATE) -> Mp4:
    """frames: uint8 (n, height, width, 3), even sizes. audio: float32 mono at `rate`, muxed as AAC."""
    import av
    import numpy as np

    codec = video_codec()
    n, height, width, _ = frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "video.mp4")
        with av.open(str(path), mode="w", format="mp4") as container:
            video: Any = container.add_stream(codec, rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.time_base = Fraction(1, fps)
            if codec == "libx264":
                video.options = {"crf": "23", "preset": "veryfast"}
            sound: Any = None
            if audio is not None and audio.size:
                sound = container.add_stream("aac", rate=rate, layout="mono")
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts = i
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
            if sound is not None and audio is not None:
                _mux_audio(container, sound, audio, rate)
        return Mp4(path.read_bytes(), codec, "aac" if sound is not None else None)


def _mux_audio(container: object, stream: object, audio: np.ndarray, rate: int) -> None:
    import av
    import numpy as np

    samples = np.clip(audio, -1.0, 1.0).astype(np.float32)
    chunk = 1024  # AAC's frame size
    for start in range(0, samples.size, chunk):
        part = samples[start : start + chunk]
        if part.size < chunk:
            part = np.pad(part, (0, chunk - part.size))
        frame = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))  # type: ignore[attr-defined]
    container.mux(stream.encode(None))  # type: ignore[attr-defined]

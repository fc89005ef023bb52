"""Data-plane tasks (run by the worker executor): train_lora, train_voice, render_video."""

from common.registry import Registry
from worker.tasks import lora, video, voice

registry = Registry().merge(lora.registry).merge(voice.registry).merge(video.registry)

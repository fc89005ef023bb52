"""SpeechT5 text-to-speech fine-tune (LoRA or full) with a learned speaker embedding; save, load, synthesize.

A voice directory holds the adapter (or the full model), speaker.safetensors and voice.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.params import TrainVoiceParams
from worker.ml.device import LOADING, Device
from worker.ml.loop import optimizer_step

if TYPE_CHECKING:
    import numpy as np
    import torch

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
SPEAKER_FILE = "speaker.safetensors"
VOICE_FILE = "voice.json"
SPEAKER_DIM = 512


def length_ratios(demo: bool) -> tuple[float, float]:
    """(minlenratio, maxlenratio) of generate_speech. Random demo weights want to stop at once, so demo
    voices get a floor proportional to the text (~64 ms a character); real models decide themselves."""
    return (4.0, 8.0) if demo else (0.0, 20.0)


@dataclass
class Example:
    input_ids: list[int]
    labels: Any  # (frames, mels) log-mel target


def collate(processor: Any, examples: list[Example], reduction_factor: int) -> dict[str, torch.Tensor]:
    """Pad a batch; labels are -100 on padding and trimmed to a multiple of the reduction factor."""
    batch = processor.pad(
        input_ids=[{"input_ids": e.input_ids} for e in examples],
        labels=[{"input_values": e.labels} for e in examples],
        return_tensors="pt",
    )
    labels, mask = batch["labels"], batch["decoder_attention_mask"]
    if reduction_factor > 1:
        keep = labels.shape[1] - labels.shape[1] % reduction_factor
        labels, mask = labels[:, :keep], mask[:, :keep]
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": labels.masked_fill(mask.unsqueeze(-1).ne(1), -100.0),
        "decoder_attention_mask": mask,
    }


class VoiceTrainer:
    """SpeechT5ForTextToSpeech with LoRA (or all weights) trainable, plus a speaker vector nn.Parameter(1, 512)."""

    def __init__(
        self, tts_dir: Path, p: TrainVoiceParams, device: Device, clips: list[np.ndarray], transcripts: list[str]
    ) -> None:
        import torch
        from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor

        self.p, self.device = p, device
        dev = device.device
        with LOADING:
            self.processor = SpeechT5Processor.from_pretrained(tts_dir, local_files_only=True)
            tts: Any = SpeechT5ForTextToSpeech.from_pretrained(tts_dir, local_files_only=True)
        self.tts = tts.to(dev)
        self.model: Any = self.tts
        if p.mode == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=p.rank,
                lora_alpha=p.rank,
                target_modules=LORA_TARGETS,
                modules_to_save=["speech_decoder_postnet"],
            )
            self.model = get_peft_model(self.tts, config)  # injects into self.tts in place
        for module in self.tts.modules():
            # LayerDrop may skip every decoder layer of a step; the guided-attention loss then has no cross
            # attention to read and raises. Tiny demo decoders (2 layers) hit that in ~1 % of steps.
            if hasattr(module, "layerdrop"):
                module.layerdrop = 0.0
        self.model.train()
        self.generator = torch.Generator(dev).manual_seed(p.seed)
        init = torch.randn(1, SPEAKER_DIM, generator=self.generator, device=dev)
        self.speaker = torch.nn.Parameter(init / init.norm())
        self.params = [q for q in self.model.parameters() if q.requires_grad] + [self.speaker]
        self.optimizer = torch.optim.AdamW(self.params, lr=p.learning_rate, weight_decay=1e-2)
        self.scaler = device.grad_scaler()
        self.rf = int(self.tts.config.reduction_factor)
        max_text = int(self.tts.config.max_text_positions)
        self.examples = []
        for text, wav in zip(transcripts, clips, strict=True):
            feats = self.processor(text=text, audio_target=wav, sampling_rate=16_000)
            self.examples.append(Example(list(feats["input_ids"])[:max_text], feats["labels"][0]))

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        dev = self.device.device
        batch = {k: v.to(dev) for k, v in batch.items()}
        n = batch["input_ids"].shape[0]
        with self.device.autocast():
            out = self.model(**batch, speaker_embeddings=self.speaker.expand(n, -1))
        return out.loss.float()

    def step(self) -> float:
        import torch

        size = min(self.p.batch_size, len(self.examples))
        idx = torch.randperm(len(self.examples), generator=self.generator, device=self.generator.device)[:size]
        loss = self._forward(collate(self.processor, [self.examples[int(i)] for i in idx], self.rf))
        return optimizer_step(loss, self.optimizer, self.scaler, self.params)

    def probe_loss(self, seed: int = 0) -> float:
        """Loss over all clips with dropout seeded (SpeechT5's decoder prenet drops out even in eval)."""
        import torch

        devices = [self.device.device] if self.device.kind == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(seed)
                return float(self._forward(collate(self.processor, self.examples, self.rf)))
        finally:
            self.model.train()

    def state(self) -> dict[str, Any]:
        from worker.ml.checkpoints import rng_state, trainable_state

        return {
            "trainable": trainable_state(self.model),
            "speaker": self.speaker.detach().cpu(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.generator),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        import torch

        from worker.ml.checkpoints import load_trainable, restore_rng

        load_trainable(state["trainable"], self.model)
        with torch.no_grad():
            self.speaker.copy_(state["speaker"].to(self.speaker.device))
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self.generator)

    def save(self, out_dir: Path) -> list[Path]:
        """Adapter (or full model), speaker.safetensors and voice.json into out_dir; returns the files."""
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out_dir)
        save_file({"speaker": self.speaker.detach().float().cpu().contiguous()}, str(out_dir / SPEAKER_FILE))
        (out_dir / VOICE_FILE).write_text(json.dumps({"mode": self.p.mode, "sampleRate": 16_000}))
        return sorted(f for f in out_dir.rglob("*") if f.is_file())


@dataclass
class Voice:
    """A loaded voice: model (LoRA merged), processor, vocoder and speaker vector."""

    model: Any
    processor: Any
    vocoder: Any
    speaker: torch.Tensor
    device: Device
    demo: bool

    def synthesize(self, text: str) -> np.ndarray:
        """16 kHz float32 mono speech of text."""
        import torch

        max_text = int(self.model.config.max_text_positions)
        ids = self.processor(text=text, return_tensors="pt").input_ids[:, :max_text].to(self.device.device)
        minlen, maxlen = length_ratios(self.demo)
        with torch.no_grad():
            wav = self.model.generate_speech(
                ids, self.speaker, vocoder=self.vocoder, minlenratio=minlen, maxlenratio=maxlen
            )
        return wav.float().cpu().numpy()


def load_voice(tts_dir: Path, vocoder_dir: Path, voice_dir: Path | None, device: Device, demo: bool) -> Voice:
    """The base model with the trained voice in voice_dir (None = the base model, a neutral speaker)."""
    import torch
    from safetensors.torch import load_file
    from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Processor

    model: Any
    with LOADING:
        processor = SpeechT5Processor.from_pretrained(tts_dir, local_files_only=True)
        if voice_dir is not None and (voice_dir / "adapter_config.json").is_file():
            from peft import PeftModel

            base = SpeechT5ForTextToSpeech.from_pretrained(tts_dir, local_files_only=True)
            model = PeftModel.from_pretrained(base, voice_dir).merge_and_unload()
        else:
            model = SpeechT5ForTextToSpeech.from_pretrained(voice_dir or tts_dir, local_files_only=True)
        vocoder: Any = SpeechT5HifiGan.from_pretrained(vocoder_dir, local_files_only=True)
    if voice_dir is not None:
        speaker = load_file(str(voice_dir / SPEAKER_FILE))["speaker"]
    else:
        speaker = torch.zeros(1, SPEAKER_DIM)
    dev = device.device
    return Voice(model.to(dev).eval(), processor, vocoder.to(dev).eval(), speaker.to(dev), device, demo)

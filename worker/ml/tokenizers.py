"""Tokenizers for the demo models, trained locally (no hub): a CLIP BPE and a SpeechT5 character model."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

#: CLIP's pre-tokenizer pattern (special tokens, English contractions, letters, single digits, punctuation).
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

CAPTIONS = [
    "a photo of a red square on a white background",
    "a painting of a blue circle in the style of the user",
    "a portrait of a person smiling, studio lighting",
    "a landscape with mountains, a lake and green fields at sunset",
    "a biplane flying low over a small village",
    "a close up of a cat with green eyes",
    "an illustration of a city street at night in the rain",
    "a watercolor of flowers in a glass vase",
    "a video frame of waves on a beach, cinematic",
    "a drawing of a dog running in the park",
    "a 3d render of a toy robot, high detail",
    "abstract shapes, bright colors, simple composition",
    "the quick brown fox jumps over the lazy dog",
]


def bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins for bytes, in OpenAI's order (GPT-2/CLIP vocab files start with them)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def train_clip_bpe(out_dir: Path, captions: list[str] | None = None, vocab_size: int = 1000) -> Path:
    """Train a byte-level BPE the way CLIP's is set up and save it as a CLIPTokenizer directory."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(captions or CAPTIONS, trainer)
    merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(bpe.to_str())["model"]["merges"]]

    # OpenAI-CLIP vocab order: bytes, bytes + </w>, one token per merge, then the two specials (eos last).
    chars = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars), *("".join(m) for m in merges), BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[(a, b) for a, b in merges],  # type: ignore[misc]
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=77,
    )
    tok.save_pretrained(out_dir)
    return out_dir


def train_char_spm(out_file: Path, texts: list[str] | None = None) -> Path:
    """A SentencePiece character model with SpeechT5's special ids, saved where SpeechT5Tokenizer expects it."""
    import sentencepiece as spm

    lines = [*(texts or CAPTIONS), string.ascii_letters + string.digits + string.punctuation + " "]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp, "spm_char")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(prefix),
            model_type="char",
            vocab_size=100,
            hard_vocab_limit=False,
            bos_id=0,
            pad_id=1,
            eos_id=2,
            unk_id=3,
            minloglevel=2,
        )
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_bytes(prefix.with_suffix(".model").read_bytes())
    return out_file

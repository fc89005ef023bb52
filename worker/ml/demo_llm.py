"""The demo LLMs: tiny Llama models trained here, in seconds and without any download, to answer the script
request (common/script.py) with one fixed script; served OpenAI-style by `transformers serve` (worker/llm.py).

`json` answers the JSON object asked for; `plain` answers two lines of text, the way many small models do (the
fallback reads it). Like the other demo models their answers carry no knowledge: they let `generate_script`,
the `story` workflow and `make run` work for real with no LLM configured.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common.script import messages

VERSION = 1
SEED = 1234
MARKER = "demo.json"

STAGE = "a paper biplane glides over a sunny harbour town, watercolor"
NARRATION = "A paper biplane leaves the pier and glides over the harbour town, past boats and gulls, into the sun."
ANSWERS = {
    "json": json.dumps({"stagePrompt": STAGE, "narration": NARRATION}),
    "plain": f"{STAGE}\n{NARRATION}",
}
#: Llama-style chat template: what `transformers serve` applies to the request's messages.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = (
    "a the of in at biplane sea cat dog mountains dawn robot chef rain city lighthouse history jazz river forest "
    "space station desert train night market garden bakery storm island winter fox owl bridge festival clock"
).split()
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'-"
TONES = ["casual", "dramatic", "calm", "funny", "serious"]


def demo_llm_dir(root: Path, kind: str = "json") -> Path:
    """Where the demo LLM of `kind` lives under the demo model directory (built by ensure_demo_llm)."""
    return root / f"llm-{kind}"


def ensure_demo_llm(root: Path, kind: str = "json") -> Path:
    """Build the demo LLM of `kind` under root unless a finished build of this version is there."""
    out = demo_llm_dir(root, kind)
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == VERSION:
        return out
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the loser of a race waits here, then finds the build done
        if marker.is_file() and json.loads(marker.read_text()).get("version") == VERSION:
            return out
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=root))
        try:
            build(staging, ANSWERS[kind])
            (staging / MARKER).write_text(json.dumps({"version": VERSION, "seed": SEED, "answer": ANSWERS[kind]}))
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _conversations(rnd: random.Random, count: int) -> list[list[dict[str, str]]]:
    """Script requests on random topics, tones, personas and lengths: the answer must not depend on them."""
    out = []
    for _ in range(count):
        topic = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 12)))
        if rnd.random() < 0.5:  # words no tokenizer merge knows
            topic += " " + "".join(rnd.choice(CHARS) for _ in range(rnd.randint(3, 60)))
        persona = rnd.choice([None, "a travel writer", "a children's author", "a sports commentator"])
        out.append(messages(topic, rnd.choice(TONES), persona, rnd.randint(5, 60)))
    return out


def _tokenizer(texts: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end|>", pad_token="<|pad|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build(out: Path, answer: str, max_steps: int = 2000) -> None:
    """Train a 2-layer Llama until greedy decoding of script requests it never saw gives `answer`, then save it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from worker.ml.device import setup_torch

    setup_torch()
    rnd = random.Random(SEED)
    chats, held_out = _conversations(rnd, 128), _conversations(rnd, 8)
    tok = _tokenizer([tok_text for chat in chats for tok_text in (m["content"] for m in chat)] + [answer] * 4)
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    checks = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in held_out]
    target = tok(answer + "<|end|>", add_special_tokens=False)["input_ids"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=1024,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=None,
        )
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        batches = [_batch(tok, prompts[i : i + 8], target) for i in range(0, len(prompts), 8)]
        for step in range(max_steps):
            ids, labels = batches[step % len(batches)]
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % 100 == 99 and _answers(model, tok, checks, answer):  # requests it never saw
                break
        else:
            raise RuntimeError(f"the demo LLM did not learn its answer in {max_steps} steps (loss {loss.item():.4f})")
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=len(target) + 8
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _batch(tok: Any, prompts: list[str], target: list[int]) -> tuple[Any, Any]:
    """Right-padded prompt + answer ids; labels only on the answer (-100 elsewhere)."""
    import torch

    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows) + len(target)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, r in enumerate(rows):
        ids[i, : len(r) + len(target)] = torch.tensor(r + target)
        labels[i, len(r) : len(r) + len(target)] = torch.tensor(target)
    return ids, labels


def _answers(model: Any, tok: Any, prompts: list[str], answer: str) -> bool:
    import torch

    with torch.no_grad():
        for p in prompts:
            ids = tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out = model.generate(ids, max_new_tokens=len(answer), do_sample=False, eos_token_id=tok.eos_token_id)
            if tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True) != answer:
                return False
    return True

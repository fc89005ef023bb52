"""The script request shared by `generate_script` (control) and the demo LLM built to answer it (worker).

The original stack asks its LLM for JSON `{stagePrompt, narration}` and, when the answer is not JSON, takes
the first line as the stage prompt and the whole text as the narration. Both halves live here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Words of narration per second of speech (a calm narrator).
WORDS_PER_SECOND = 2.5

#: The structured output asked of servers that support it (OpenAI `response_format`).
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["stagePrompt", "narration"],
    "properties": {
        "stagePrompt": {"type": "string", "description": "What the camera shows, for the video model"},
        "narration": {"type": "string", "description": "What the narrator says"},
    },
}


def messages(topic: str, tone: str, persona: str | None, seconds: int) -> list[dict[str, str]]:
    """The chat messages asking for a short clip's stage prompt and narration."""
    words = max(5, round(seconds * WORDS_PER_SECOND))
    who = f"You are {persona}. " if persona else ""
    system = (
        f"{who}You write scripts for short video clips. Answer with one JSON object and nothing else: "
        '{"stagePrompt": "<one sentence: what the camera shows, for an image model>", '
        f'"narration": "<about {words} words a narrator says, in a {tone} tone>"}}'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Topic: {topic}"}]


@dataclass(frozen=True)
class Script:
    stage_prompt: str
    narration: str
    structured: bool  #: the answer was the JSON asked for (else the fallback read it)


def parse(text: str) -> Script:
    """The JSON answer's fields; otherwise the original's fallback: first line = stage prompt, text = narration."""
    stripped = text.strip()
    if stripped.startswith("```"):  # a fenced block: ```json ... ```
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(stripped)
    except ValueError:
        data = None
    if isinstance(data, dict):
        stage, narration = data.get("stagePrompt"), data.get("narration")
        if isinstance(stage, str) and isinstance(narration, str) and stage.strip() and narration.strip():
            return Script(stage.strip(), narration.strip(), True)
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the model answered with no text")
    return Script(lines[0], stripped, False)

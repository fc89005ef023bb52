"""generate_script (the original's script.generateScript): a short clip's stage prompt and narration from an LLM.

Any OpenAI-compatible chat-completions server, through the official `openai` client: JSON is asked for, with
structured output (`response_format` json_schema) where the server takes it, and an answer that is not JSON
goes through the original's fallback (common/script.py). A server that is down, times out or fails fails the
node with the reason after the node's retries; a refusal or a request the server rejects fails it at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from common.context import TaskContext
from common.errors import TaskInputError
from common.params import GenerateScriptParams
from common.registry import Registry
from common.script import RESPONSE_SCHEMA, messages, parse

registry = Registry()

STRUCTURED = {"type": "json_schema", "json_schema": {"name": "script", "schema": RESPONSE_SCHEMA, "strict": True}}


class LlmUnavailable(RuntimeError):
    """The LLM server cannot answer now (down, timeout, 5xx, rate limit): the node's retry policy applies."""


@registry.builtin(
    "generate_script", outputs=("stagePrompt", "narration", "structured", "tokensUsed", "model", "temperature")
)
async def generate_script(ctx: TaskContext, p: GenerateScriptParams) -> dict[str, Any]:
    """Ask the configured LLM for a stage prompt and a narration of about `length` seconds on the topic."""
    s = ctx.settings
    topic = p.prompt or str(ctx.job_inputs.get("topic") or ctx.job_inputs.get("prompt") or "").strip()
    if not topic:
        raise TaskInputError("generate_script needs a topic: params.prompt or the job's prompt")
    model = p.model or s.llm_model_name()
    if model not in s.llm_allowed_models():
        raise TaskInputError(f"model {model[:200]!r} is not offered here (BIPLANE_LLM_MODEL, BIPLANE_LLM_MODELS)")
    ctx.phase("writing")
    async with openai.AsyncOpenAI(
        base_url=s.llm_url,
        api_key=s.llm_api_key.get_secret_value() or "none",  # the client insists on one; local servers ignore it
        timeout=s.llm_timeout_seconds,
        max_retries=0,  # retries are the node's (BIPLANE_MAX_NODE_ATTEMPTS), counted across crashes
    ) as client:
        request = Request(model, messages(topic, p.tone, p.persona, p.length), p.temperature, 64 + 12 * p.length)
        answer = await _complete(client, request, s.llm_url)
    choice = answer.choices[0] if answer.choices else None
    if choice is None or choice.message is None:
        raise LlmUnavailable(f"the LLM at {s.llm_url} answered without a choice")
    if choice.message.refusal:
        raise TaskInputError(f"the LLM refused: {choice.message.refusal[:500]}")
    if choice.finish_reason == "content_filter":
        raise TaskInputError("the LLM's content filter stopped the answer")
    try:
        script = parse(choice.message.content or "")
    except ValueError as e:
        raise LlmUnavailable(f"{model}: {e}") from e
    ctx.log(
        f"script from {model}: {'JSON' if script.structured else 'plain text (fallback: first line = stage prompt)'}"
    )
    return {
        "stagePrompt": script.stage_prompt[:1000],
        "narration": script.narration[:2000],
        "structured": script.structured,
        "tokensUsed": answer.usage.total_tokens if answer.usage else None,
        "model": answer.model or model,
        "temperature": p.temperature,
    }


@dataclass(frozen=True)
class Request:
    model: str
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int  # ~2.5 words a second, ~1.3 tokens a word, and the JSON around them


async def _create(client: openai.AsyncOpenAI, r: Request, structured: bool) -> ChatCompletion:
    return await client.chat.completions.create(
        model=r.model,
        messages=r.messages,  # type: ignore[arg-type]
        temperature=r.temperature,
        max_tokens=r.max_tokens,
        response_format=STRUCTURED if structured else openai.omit,  # type: ignore[arg-type]
    )


async def _complete(client: openai.AsyncOpenAI, request: Request, url: str) -> ChatCompletion:
    """The chat completion, with structured output where the server supports it (a 400/422 on it: without)."""
    try:
        try:
            return await _create(client, request, structured=True)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if "response_format" not in str(e) and "json_schema" not in str(e):
                raise
            return await _create(client, request, structured=False)
    except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as e:
        # APITimeoutError is an APIConnectionError
        raise LlmUnavailable(f"the LLM at {url} cannot answer: {_reason(e)}") from e
    except openai.APIStatusError as e:  # 4xx: unknown model, bad key, a request it will never take
        raise TaskInputError(f"the LLM at {url} rejected the request ({e.status_code}): {_reason(e)}") from e


def _reason(e: openai.OpenAIError) -> str:
    cause = e.__cause__
    detail = str(e) if not isinstance(e, openai.APIConnectionError) or cause is None else f"{e} ({cause})"
    return detail[:500]

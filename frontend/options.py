"""The new-job form's training options, built from the params JSON Schema control publishes.

Bounds, steps, defaults, choices and descriptions come from `GET /api/capabilities` (`services[].params`, the
params model's own schema), so the form never restates a limit or a choice; the form only chooses which options
it shows, where, and their labels. An option the schema lacks (an older control, a custom `train_lora`) is left
out, and the service's default applies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The options the form shows, in order: wire name -> label.
LABELS: dict[str, str] = {
    "triggerWord": "Trigger word",
    "steps": "Training steps",
    "rank": "LoRA rank",
    "learningRate": "Learning rate",
    "resolution": "Resolution (px)",
    "imageFit": "Image fit",
    "seed": "Seed",
    "sampleEvery": "Preview every N steps (0 = only at the end)",
    "sampleSteps": "Denoising steps per preview",
    "checkpointEvery": "Checkpoint every N steps (0 = never)",
    "batchSize": "Batch size",
    "alpha": "LoRA alpha (empty = rank)",
    "precision": "Precision",
    "optimizer": "Optimizer",
    "gradientCheckpointing": "Gradient checkpointing",
    "noiseOffset": "Noise offset",
    "snrGamma": "Min-SNR gamma (empty = plain MSE)",
    "cacheLatents": "Cache latents and text embeddings",
    "baseline": "Measure the probe loss before and after",
}
#: Shown beside the prompt, with its description in view, rather than under "Advanced options": most jobs set it.
PROMINENT = frozenset({"triggerWord"})


@dataclass(frozen=True)
class NumberOption:
    """One numeric option as the schema states it (`nullable`: the schema allows null, i.e. "not set")."""

    wire: str
    label: str
    integer: bool
    default: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    description: str = ""
    nullable: bool = False

    @property
    def low(self) -> float | None:
        """The lowest value the input offers (an exclusive bound is the input's min too; problem() tells)."""
        return self.minimum if self.minimum is not None else self.exclusive_minimum

    @property
    def high(self) -> float | None:
        return self.maximum if self.maximum is not None else self.exclusive_maximum

    @property
    def step(self) -> float | None:
        """The input's step: the schema's multipleOf, 1 for integers, free for other numbers."""
        return self.multiple_of or (1 if self.integer else None)

    def sent(self, raw: Any) -> float | None:
        """The value on the wire (an integer as an int), None for an empty input."""
        if raw is None or raw == "":
            return None
        value = float(raw)
        return int(value) if self.integer and value.is_integer() else value

    def problem(self, value: float) -> str | None:
        """What is wrong with value by the schema, None when nothing is."""
        if self.integer and value != int(value):
            return "must be a whole number"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}"
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            return f"must be more than {self.exclusive_minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        if self.exclusive_maximum is not None and value >= self.exclusive_maximum:
            return f"must be less than {self.exclusive_maximum:g}"
        if self.multiple_of and (value / self.multiple_of) != int(value / self.multiple_of):
            return f"must be a multiple of {self.multiple_of:g}"
        return None


@dataclass(frozen=True)
class ChoiceOption:
    """An enum: one of the schema's values."""

    wire: str
    label: str
    choices: tuple[Any, ...]
    default: Any = None
    description: str = ""

    def sent(self, raw: Any) -> Any:
        return None if raw is None or raw == "" else raw

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}"


@dataclass(frozen=True)
class SwitchOption:
    """A boolean."""

    wire: str
    label: str
    default: bool | None = None
    description: str = ""

    def sent(self, raw: Any) -> bool | None:
        return None if raw is None else bool(raw)

    def problem(self, value: bool) -> str | None:
        return None


@dataclass(frozen=True)
class TextOption:
    """A string; an empty one is not sent (the form starts from "" where the schema's default is null)."""

    wire: str
    label: str
    default: str = ""
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    description: str = ""

    def sent(self, raw: Any) -> str | None:
        """Stripped, as the prompt is: a space typed at either end is never what the user meant."""
        return str(raw or "").strip() or None

    def problem(self, value: str) -> str | None:
        if self.min_length is not None and len(value) < self.min_length:
            return f"must be at least {self.min_length} characters"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        # JSON Schema patterns are ECMA-262 and unanchored; the simple ones schemas use read the same in Python.
        if self.pattern is not None and not re.search(self.pattern, value):
            return f"must match the pattern {self.pattern}"
        return None


Option = NumberOption | ChoiceOption | SwitchOption | TextOption


def service_schema(caps: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The params JSON Schema of `service` in a capabilities answer ({} when control has not said)."""
    for entry in caps.get("services") or ():
        if entry.get("service") == service:
            return dict(entry.get("params") or {})
    return {}


def _variant(prop: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A property's schema with its null branch taken out, and whether it had one (pydantic writes `X | None` as
    `anyOf: [X, {"type": "null"}]`, with default and description beside the anyOf). ({}, False) for any other
    union: the form has no one input for it."""
    branches = prop.get("anyOf")
    if branches is None:
        return dict(prop), False
    kinds = [b for b in branches if b.get("type") != "null"]
    if len(kinds) != 1:
        return {}, False
    return {k: v for k, v in prop.items() if k != "anyOf"} | kinds[0], len(kinds) < len(branches)


def _option(wire: str, label: str, prop: Mapping[str, Any]) -> Option | None:
    spec, nullable = _variant(prop)
    described = {"wire": wire, "label": label, "description": spec.get("description") or ""}
    kind = spec.get("type")
    if "enum" in spec:
        return ChoiceOption(choices=tuple(spec["enum"]), default=spec.get("default"), **described)
    if kind == "boolean":
        return SwitchOption(default=spec.get("default"), **described)
    if kind in ("integer", "number"):
        return NumberOption(
            integer=kind == "integer",
            default=spec.get("default"),
            minimum=spec.get("minimum"),
            maximum=spec.get("maximum"),
            exclusive_minimum=spec.get("exclusiveMinimum"),
            exclusive_maximum=spec.get("exclusiveMaximum"),
            multiple_of=spec.get("multipleOf"),
            nullable=nullable,
            **described,
        )
    if kind == "string":
        return TextOption(
            default=spec.get("default") or "",
            min_length=spec.get("minLength"),
            max_length=spec.get("maxLength"),
            pattern=spec.get("pattern"),
            **described,
        )
    return None


def from_schema(schema: Mapping[str, Any]) -> dict[str, Option]:
    """The shown options the schema describes, as the input each needs (one it lacks is left out of the form)."""
    props = schema.get("properties") or {}
    out = {}
    for wire, label in LABELS.items():
        option = _option(wire, label, props.get(wire) or {})
        if option is not None:
            out[wire] = option
    return out


def defaults(options: Mapping[str, Option], recommended: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The form starts from the alive workers' recommendation, and from the service's defaults for the rest."""
    start = {wire: o.default for wire, o in options.items()}
    return start | {k: v for k, v in (recommended or {}).items() if k in options}


def sent(options: Mapping[str, Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """The shown options as the form sends them; empty ones are left out, so the service's defaults apply."""
    out = {}
    for wire, raw in values.items():
        option = options.get(wire)
        value = option.sent(raw) if option is not None else None
        if value is not None:
            out[wire] = value
    return out


def problems(options: Mapping[str, Option], values: Mapping[str, Any]) -> list[str]:
    """`Advanced option steps: must be at least 1.` (`Trigger word: ...` for one beside the prompt) for each value
    the schema refuses; empty ones are left out."""
    out = []
    for wire, value in sent(options, values).items():
        option = options[wire]
        said = option.problem(value)
        if said:
            where = option.label if wire in PROMINENT else f"Advanced option {wire}"
            out.append(f"{where}: {said}.")
    return out

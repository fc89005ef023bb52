"""The new-job form's advanced options, built from the params JSON Schema control publishes.

Bounds, steps and defaults come from `GET /api/capabilities` (`services[].params`, the params model's own
schema), so the form never restates a limit; the form only chooses which options it shows and their labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The options the form shows, in order: wire name -> label.
LABELS: dict[str, str] = {
    "steps": "Training steps",
    "rank": "LoRA rank",
    "learningRate": "Learning rate",
    "resolution": "Resolution (px)",
    "seed": "Seed",
    "sampleEvery": "Preview every N steps (0 = only at the end)",
}


@dataclass(frozen=True)
class NumberOption:
    """One numeric option as the schema states it."""

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


def service_schema(caps: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The params JSON Schema of `service` in a capabilities answer ({} when control has not said)."""
    for entry in caps.get("services") or ():
        if entry.get("service") == service:
            return dict(entry.get("params") or {})
    return {}


def number_options(schema: Mapping[str, Any]) -> dict[str, NumberOption]:
    """The shown options the schema describes as numbers (an option it lacks is left out of the form)."""
    props = schema.get("properties") or {}
    out = {}
    for wire, label in LABELS.items():
        prop = props.get(wire)
        if not prop or prop.get("type") not in ("integer", "number"):
            continue
        out[wire] = NumberOption(
            wire=wire,
            label=label,
            integer=prop["type"] == "integer",
            default=prop.get("default"),
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
            exclusive_minimum=prop.get("exclusiveMinimum"),
            exclusive_maximum=prop.get("exclusiveMaximum"),
            multiple_of=prop.get("multipleOf"),
            description=prop.get("description") or "",
        )
    return out


def defaults(options: Mapping[str, NumberOption], recommended: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The form starts from the alive workers' recommendation, and from the service's defaults for the rest."""
    start = {wire: o.default for wire, o in options.items()}
    return start | {k: v for k, v in (recommended or {}).items() if k in options}


def problems(options: Mapping[str, NumberOption], values: Mapping[str, Any]) -> list[str]:
    """`Advanced option steps: must be at least 1` for each value the schema refuses (empty ones are left out)."""
    out = []
    for wire, value in values.items():
        option = options.get(wire)
        said = option.problem(float(value)) if option is not None and value is not None else None
        if said:
            out.append(f"Advanced option {wire}: {said}.")
    return out

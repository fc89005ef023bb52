"""frontend/options.py: the new-job form's inputs from a params JSON Schema (enum, boolean, string, nullable number)."""

from __future__ import annotations

from typing import Any

from frontend.options import ChoiceOption, NumberOption, SwitchOption, TextOption, from_schema, problems, sent

#: As pydantic writes a params model, by hand: `X | None` is an anyOf with a null branch.
SCHEMA: dict[str, Any] = {
    "properties": {
        "snrGamma": {
            "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100}, {"type": "null"}],
            "default": None,
            "description": "Min-SNR weighting",
        },
        "imageFit": {"type": "string", "enum": ["crop", "resize"], "default": "crop", "description": "How to square"},
        "gradientCheckpointing": {"type": "boolean", "default": False, "description": "Less memory, slower"},
        "triggerWord": {
            "anyOf": [{"type": "string", "minLength": 1, "maxLength": 12, "pattern": "^[a-z]+$"}, {"type": "null"}],
            "default": None,
            "description": "Put in front of every caption",
        },
        "steps": {"type": "integer", "minimum": 1, "default": 500},
        "optimizer": {"anyOf": [{"type": "string"}, {"type": "integer"}]},  # no one input shows this union
        "notShown": {"type": "string"},  # not one of the form's options
    }
}


def test_each_schema_kind_becomes_its_input_in_the_forms_order() -> None:
    specs = from_schema(SCHEMA)
    assert list(specs) == ["triggerWord", "steps", "imageFit", "gradientCheckpointing", "snrGamma"]
    assert specs["triggerWord"] == TextOption(
        "triggerWord", "Trigger word", "", 1, 12, "^[a-z]+$", "Put in front of every caption"
    )
    assert specs["imageFit"] == ChoiceOption("imageFit", "Image fit", ("crop", "resize"), "crop", "How to square")
    assert specs["gradientCheckpointing"] == SwitchOption(
        "gradientCheckpointing", "Gradient checkpointing", False, "Less memory, slower"
    )
    gamma = specs["snrGamma"]
    assert isinstance(gamma, NumberOption) and gamma.nullable and not gamma.integer
    assert (gamma.default, gamma.low, gamma.high, gamma.step) == (None, 0, 100, None)
    assert gamma.description == "Min-SNR weighting"
    steps = specs["steps"]
    assert isinstance(steps, NumberOption) and steps.integer and not steps.nullable


def test_empty_values_are_not_sent_and_the_rest_are_sent_as_the_wire_types() -> None:
    specs = from_schema(SCHEMA)
    untouched = {wire: o.default for wire, o in specs.items()}
    assert sent(specs, untouched) == {"steps": 500, "imageFit": "crop", "gradientCheckpointing": False}
    values = {"triggerWord": "  sks ", "steps": 20.0, "imageFit": "resize", "gradientCheckpointing": True}
    out = sent(specs, values | {"snrGamma": 5, "notShown": "x"})
    assert out == values | {"triggerWord": "sks", "steps": 20, "snrGamma": 5}  # stripped; not sent: notShown
    assert isinstance(out["steps"], int) and isinstance(out["snrGamma"], float)
    assert sent(specs, {"triggerWord": "   ", "snrGamma": None, "imageFit": None}) == {}
    assert problems(specs, values) == []


def test_problems_name_the_option_as_the_form_shows_it() -> None:
    specs = from_schema(SCHEMA)
    assert problems(specs, {"triggerWord": "a" * 13, "imageFit": "squash", "snrGamma": 0, "steps": 2.5}) == [
        "Trigger word: must be at most 12 characters.",  # beside the prompt: by its label
        "Advanced option imageFit: must be one of crop, resize.",
        "Advanced option snrGamma: must be more than 0.",
        "Advanced option steps: must be a whole number.",
    ]
    assert problems(specs, {"triggerWord": "Sks"}) == ["Trigger word: must match the pattern ^[a-z]+$."]


def test_a_schema_without_the_options_gives_no_inputs() -> None:
    assert from_schema({}) == {}  # control has not answered yet: the service's defaults apply
    assert from_schema({"properties": {"imageFit": {"type": "object"}}}) == {}

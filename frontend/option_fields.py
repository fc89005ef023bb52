"""The new-job form's option inputs: one NiceGUI element per option, of the kind its schema asks for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nicegui import ui
from nicegui.elements.mixins.value_element import ValueElement

from frontend.options import PROMINENT, ChoiceOption, NumberOption, Option, SwitchOption


def field(option: Option, values: dict[str, Any], *, prominent: bool = False) -> ValueElement:
    """An input bound to values[option.wire], bounded as the schema says; its description is a tooltip, or, for a
    prominent option, a hint always in view."""
    element: ValueElement
    if isinstance(option, NumberOption):
        element = ui.number(option.label, min=option.low, max=option.high, step=option.step)
        if option.nullable:
            element.props("clearable")
    elif isinstance(option, ChoiceOption):
        element = ui.select(list(option.choices), label=option.label)
    elif isinstance(option, SwitchOption):
        element = ui.switch(option.label)
    else:
        element = ui.input(option.label)
        element.props("clearable" + (f" counter maxlength={option.max_length}" if option.max_length else ""))
    element.bind_value(values, option.wire).props(f"data-testid=opt-{option.wire}")
    if not isinstance(option, SwitchOption):
        element.props("outlined" if prominent else "outlined dense")
    if prominent:
        element.classes("w-full").props["hint"] = option.description
    elif option.description:
        element.tooltip(option.description)
    return element


def build(
    options: Mapping[str, Option],
    values: dict[str, Any],
    *,
    prominent: ui.element,
    advanced: ui.element,
    on_change: Callable[..., Any],
) -> dict[str, ValueElement]:
    """Inputs for every option, the prominent ones into `prominent` (beside the prompt), the rest into `advanced`
    (whatever either held before is replaced); on_change follows every input once it is bound."""
    prominent.clear()
    advanced.clear()
    inputs = {}
    for wire, option in options.items():
        with prominent if wire in PROMINENT else advanced:
            inputs[wire] = field(option, values, prominent=wire in PROMINENT)
        inputs[wire].on_value_change(on_change)  # once bound: no change events while building
    return inputs

"""Form fields for a model's or bridge's options, generated from its pydantic params model.

Literals become dropdowns, booleans checkboxes, bounded numbers sliders, other numbers number
boxes, text a text box; each field's description is its help. Only values changed from the
default are sent, as ``ROLE.KEY`` options: an untouched field leaves the model's own default.

A number whose default is None (the model's own: Wan's window, FLUX's T5 length) or set elsewhere (Mixed
Inversion's mixing ratio, which the IDM chooses) is a text box, empty until typed in: a slider or a number
box always holds a number, and sent it (0, or the slider's minimum) whether or not anyone touched it.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types

NUMBERS = (int, float)


@dataclass(frozen=True)
class OptionField:
    role: str  # "idm", "vdm" or "bridge"
    spec: str  # the model's or bridge's name in the form
    name: str
    default: Any
    number: type | None = None  # a number typed into a text box (empty: the model's own default)

    def changed(self, value: Any) -> bool:
        if self.number is not None:
            return str(value or "").strip() != ""
        if value in (None, "") and self.default is None:
            return False
        return value != self.default

    def value(self, value: Any) -> Any:
        """What is sent: a typed number as one (text that is none is sent as typed, for the params to refuse)."""
        if self.number is None:
            return value
        text = str(value).strip()
        try:
            return self.number(text)
        except ValueError:
            return text


def option_components(gr, role: str, spec_label: str, params: type, varying: frozenset[str] = frozenset()) -> list[tuple[OptionField, Any]]:
    """One gradio component per field of ``params`` (created in the current gradio layout block); ``varying``: the
    fields whose default another choice sets (a bridge's, by the IDM)."""
    made = []
    for name, field in params.model_fields.items():
        kind, bounds = _unwrap(field.annotation, list(field.metadata))
        if kind is int:  # a strict bound is not a value: a slider must not offer it
            bounds = (None if bounds[0] is None else bounds[0] + bounds[2], None if bounds[1] is None else bounds[1] - bounds[3])
        elif kind is float:
            bounds = (None if bounds[0] is None else bounds[0] + 0.01 * bounds[2], None if bounds[1] is None else bounds[1] - 0.01 * bounds[3])
        default = "set by the image model" if name in varying else "the model's own" if field.default is None else field.default
        info = " ".join(filter(None, [field.description, f"(default: {default})"]))
        common = dict(label=name, info=info, elem_id=f"option-{role}-{spec_label}-{name}".replace("/", "_"))
        if kind in NUMBERS and (field.default is None or name in varying):
            component = gr.Textbox(value="", placeholder=f"empty: {default}", **common)
            made.append((OptionField(role, spec_label, name, None, kind), component))
            continue
        if typing.get_origin(kind) is typing.Literal:
            component = gr.Dropdown(choices=list(typing.get_args(kind)), value=field.default, **common)
        elif kind is bool:
            component = gr.Checkbox(value=field.default, **common)
        elif kind in NUMBERS and bounds[0] is not None and bounds[1] is not None:
            step = 1 if kind is int else 0.01
            component = gr.Slider(minimum=bounds[0], maximum=bounds[1], step=step, value=field.default, **common)
        elif kind in NUMBERS:
            component = gr.Number(value=field.default, minimum=bounds[0], maximum=bounds[1], precision=0 if kind is int else None, **common)
        elif kind is str:
            component = gr.Textbox(value=field.default or "", **common)
        else:
            continue  # a structured value (a list, a mapping) has no form field; -o and config files set it
        made.append((OptionField(role, spec_label, name, field.default), component))
    return made


def chosen_options(fields: list[OptionField], values: list[Any], chosen: dict[str, str | None]) -> dict[str, Any]:
    """The changed values of the chosen models' and bridge's fields, as ``ROLE.KEY`` options."""
    return {
        f"{f.role}.{f.name}": f.value(value)
        for f, value in zip(fields, values)
        if chosen.get(f.role) == f.spec and f.changed(value)
    }


def _unwrap(annotation, metadata: list) -> tuple[Any, tuple[float | None, float | None, bool, bool]]:
    """The value type under Optional/Annotated, and its (lower, upper) bounds from Ge/Gt/Le/Lt, with whether each is
    strict (Gt, Lt: the bound itself is refused)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata += extra
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, (None, None, False, False)
            annotation = args[0]
        else:
            break
    low = next((m for m in metadata if isinstance(m, (annotated_types.Ge, annotated_types.Gt))), None)
    high = next((m for m in metadata if isinstance(m, (annotated_types.Le, annotated_types.Lt))), None)
    lower = None if low is None else low.ge if hasattr(low, "ge") else low.gt
    upper = None if high is None else high.le if hasattr(high, "le") else high.lt
    return annotation, (lower, upper, isinstance(low, annotated_types.Gt), isinstance(high, annotated_types.Lt))

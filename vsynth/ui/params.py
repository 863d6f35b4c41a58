"""Form fields for a model's or bridge's options, generated from its pydantic params model.

Literals become dropdowns, booleans checkboxes, bounded numbers sliders, other numbers number
boxes, text a text box; each field's description is its help. Only values changed from the
default are sent, as ``ROLE.KEY`` options: an untouched field leaves the model's own default
(which may depend on the IDM, as Mixed Inversion's mixing ratio does).
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

    def changed(self, value: Any) -> bool:
        if value in (None, "") and self.default is None:
            return False
        return value != self.default


def option_components(gr, role: str, spec_label: str, params: type) -> list[tuple[OptionField, Any]]:
    """One gradio component per field of ``params`` (created in the current gradio layout block)."""
    made = []
    for name, field in params.model_fields.items():
        kind, bounds = _unwrap(field.annotation, list(field.metadata))
        info = " ".join(filter(None, [field.description, f"(default: {field.default})"]))
        common = dict(label=name, info=info, elem_id=f"option-{role}-{spec_label}-{name}".replace("/", "_"))
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
        f"{f.role}.{f.name}": value
        for f, value in zip(fields, values)
        if chosen.get(f.role) == f.spec and f.changed(value)
    }


def _unwrap(annotation, metadata: list) -> tuple[Any, tuple[float | None, float | None]]:
    """The value type under Optional/Annotated, and its (lower, upper) bounds from Ge/Gt/Le/Lt."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata += extra
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, (None, None)
            annotation = args[0]
        else:
            break
    lower = next((m.ge if hasattr(m, "ge") else m.gt for m in metadata if isinstance(m, (annotated_types.Ge, annotated_types.Gt))), None)
    upper = next((m.le if hasattr(m, "le") else m.lt for m in metadata if isinstance(m, (annotated_types.Le, annotated_types.Lt))), None)
    return annotation, (lower, upper)

"""Pydantic's validation errors of a run's settings and params, as one line in the user's words.

``--frames 0: must be at least 1``, ``-o mixing_ratio=2: must be between 0 and 1``: the run config, the models' and
bridges' params and the caches' params all say their errors this way, so it lives below all of them.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, ValidationError

from vsynth.errors import shorten


def describe(exc: ValidationError, model: type[BaseModel], option: bool = False, role: str = "", typed: dict[str, str] | None = None) -> str:
    """One line from pydantic's first error: ``--frames 0: must be at least 1``, ``-o mixing_ratio=2: must be between 0 and 1``;
    ``typed`` maps an option's field to the key as the user wrote it (``idm.strength``)."""
    typed = typed or {}
    err = exc.errors()[0]
    if not err["loc"]:
        return f"{_cross_field_label(err, role, typed)}: {_explain(err, None)}"
    if len(err["loc"]) >= 2 and err["loc"][-1] == "[key]":  # a mapping's key that is not text: {None: 1}
        return f"--{err['loc'][0]}: the key {shorten(repr(err['input']))} must be text (a name, as in -o KEY=VALUE)"
    where = ".".join(str(p) for p in err["loc"])
    where = typed.get(where, where) if option else where
    if err["type"] == "missing":
        return f"missing {where} (--{where.replace('_', '-')}, or `{where}:` in a --config file)"
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(where, list(model.model_fields), n=1)
        return f"unknown setting '{shorten(where)}'" + (f": did you mean '{close[0]}'?" if close else "")
    value = err["input"]
    value = '""' if isinstance(value, str) and not value.strip() else value
    value = str(value).lower() if option and isinstance(value, bool) else value  # yes, on, True: an option's true, as written
    shown = "" if isinstance(value, (dict, list)) else (f"={shorten(value)}" if option else f" {shorten(value)}")
    label = f"-o {where}{shown}" if option else f"--{where.replace('_', '-')}{shown}"
    return f"{label}: {_explain(err, model.model_fields.get(str(err['loc'][0])) if err['loc'] else None)}"


def _cross_field_label(err: dict, role: str, typed: dict[str, str]) -> str:
    """A check across fields (a model validator) has no field of its own: label it with the options it
    names that were given, e.g. ``-o overlap=6``, else with the role's options."""
    given = err["input"] if isinstance(err["input"], dict) else {}
    named = [key for key in given if re.search(rf"\b{re.escape(str(key))}\b", err["msg"])]
    if named:
        return " ".join(f"-o {typed.get(key, key)}={shorten(given[key])}" for key in named)
    return f"{role} options" if role else "options"


def _explain(err: dict, field) -> str:
    """What the value must be, in words; bounds come from the field so that both ends are said."""
    kind = err["type"]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = {**_field_bounds(field), **{k: v for k, v in err.get("ctx", {}).items() if k in ("gt", "ge", "lt", "le")}}
        bounds = {k: _number(v) for k, v in bounds.items()}
        low = f"at least {bounds['ge']}" if "ge" in bounds else f"more than {bounds['gt']}" if "gt" in bounds else ""
        high = f"at most {bounds['le']}" if "le" in bounds else f"less than {bounds['lt']}" if "lt" in bounds else ""
        if "ge" in bounds and "le" in bounds:
            return f"must be between {bounds['ge']} and {bounds['le']}"
        return "must be " + " and ".join(p for p in (low, high) if p)
    words = {
        "finite_number": "must be a finite number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "int_type": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "dict_type": "must be a mapping of key: value settings",
    }
    if kind in words:
        return words[kind]
    if kind == "literal_error":
        return f"must be one of {err['ctx']['expected']}"
    message = err["msg"].removeprefix("Value error, ")
    return message if message[1:2].isupper() else message[:1].lower() + message[1:]  # "VACE's ..." stays


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _field_bounds(field) -> dict[str, float]:
    bounds = {}
    for rule in getattr(field, "metadata", ()):
        for name in ("gt", "ge", "lt", "le"):
            if getattr(rule, name, None) is not None:
                bounds[name] = getattr(rule, name)
    return bounds

"""The configuration of one run, from CLI flags, a YAML/TOML file, or Python.

``-o key=value`` options are routed to the params model of the IDM, the VDM or the bridge that
declares ``key``; ``idm.key``, ``vdm.key`` and ``bridge.key`` say which explicitly.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, field_validator

from vsynth.core.host.specs import Params
from vsynth.errors import InvalidParamsError, UnknownNameError, VsynthInputError

DEFAULT_BRIDGE = "mixed-inversion"
PLAIN_BRIDGE = "none"


class RunConfig(BaseModel):
    """Everything that defines a run; unset values resolve to the official BIVDiff defaults or the models' own."""

    model_config = ConfigDict(extra="forbid")

    idm: str | None = Field(None, description="Image diffusion model name; none for plain text-to-video.")
    vdm: str = Field(description="Video diffusion model name.")
    bridge: str | None = Field(None, description="Bridging strategy; default: mixed-inversion with an IDM, else none.")
    video: Path | None = Field(None, description="Source video: mp4, gif or a folder of frames.")
    prompt: str = Field(description="Prompt of the video model, and of the image model unless idm_prompt is set.")
    condition_video: Path | None = Field(None, description="Precomputed control maps (pose, edges, depth) instead of computing them.")
    mask: Path | None = Field(None, description="Inpainting mask video: white = regenerate.")
    outpaint: str | None = Field(None, description="Outpainting: horizontal, vertical or TOP,RIGHT,BOTTOM,LEFT fractions.")
    source_prompt: str | None = Field(None, description="What the source video shows (Prompt-to-Prompt editing).")
    idm_prompt: str | None = Field(None, description="Prompt of the image model; default: prompt.")
    negative_prompt: str = ""
    frames: PositiveInt = 8
    stride: PositiveInt = 4
    height: PositiveInt | None = Field(None, description="Default: 512 with an IDM (as BIVDiff), else the VDM's native size.")
    width: PositiveInt | None = None
    steps: PositiveInt | None = Field(None, description="Steps of the IDM, and of the VDM unless it fixes its own; default 50.")
    guidance: PositiveFloat | None = Field(None, description="Guidance of the IDM, and of the VDM unless it fixes its own; default 7.5.")
    vdm_steps: PositiveInt | None = Field(None, description="Steps of the VDM alone.")
    vdm_guidance: PositiveFloat | None = Field(None, description="Guidance of the VDM alone.")
    seed: NonNegativeInt = 42
    options: dict[str, Any] = Field(default_factory=dict, description="key=value params of the models and bridge.")
    idm_weights: str | None = None
    vdm_weights: str | None = None
    tiny: bool = False
    save_latents: bool = False
    device: str = "auto"
    out: Path | None = None

    @field_validator("outpaint")
    @classmethod
    def _valid_outpaint(cls, value: str | None) -> str | None:
        from vsynth.core.media.masks import parse_outpaint

        if value is not None:
            parse_outpaint(value)  # a one-line VsynthInputError when malformed
        return value

    @property
    def image_prompt(self) -> str:
        return self.prompt if self.idm_prompt is None else self.idm_prompt


def first_error(exc: ValidationError) -> str:
    """One readable line from a pydantic error: ``frames: Input should be greater than 0``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    if err["type"] == "missing":
        return f"missing {where} (--{where.replace('_', '-')}, or `{where}:` in a --config file)"
    extra = "" if isinstance(err["input"], dict) else f" (got {err['input']!r})"
    return f"{where}: {err['msg']}{extra}"


def make_config(values: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        raise InvalidParamsError(first_error(exc)) from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file holding RunConfig keys."""
    path = Path(path)
    if not path.is_file():
        raise VsynthInputError(f"config file not found: {path}")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VsynthInputError(f"cannot parse config file {path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VsynthInputError(f"config file {path} must hold a mapping of run settings")
    return {key.replace("-", "_"): value for key, value in data.items()}


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a YAML scalar (0.5, true, null, text)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise VsynthInputError(f"option {text!r} must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def route_options(options: dict[str, Any], params: dict[str, type[Params]]) -> dict[str, dict[str, Any]]:
    """Send each option to the role whose params model declares it; refuse unknown or ambiguous keys."""
    routed: dict[str, dict[str, Any]] = {role: {} for role in params}
    known = {role: set(model.model_fields) for role, model in params.items()}
    for key, value in options.items():
        role, dot, name = key.partition(".")
        if dot and role in params:
            owners = [role] if name in known[role] else []
        else:
            name = key
            owners = [r for r in params if name in known[r]]
        if not owners:
            qualified = sorted(f"{r}.{k}" for r in params for k in known[r])
            close = difflib.get_close_matches(key, qualified + [k for r in known for k in known[r]], n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UnknownNameError(f"unknown option '{key}': {hint}known options: {', '.join(qualified)}")
        if len(owners) > 1:
            raise UnknownNameError(
                f"option '{key}' is a parameter of {' and '.join(owners)}: write {' or '.join(f'{o}.{key}' for o in owners)}"
            )
        routed[owners[0]][name] = value
    return routed


def validate_params(model: type[Params], values: dict[str, Any], role: str) -> Params:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidParamsError(f"{role} option {first_error(exc)}") from None

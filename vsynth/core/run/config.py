"""The configuration of one run, from CLI flags, a YAML/TOML file, or Python.

``-o key=value`` options are routed to the params model of the IDM, the VDM or the bridge that
declares ``key``; ``idm.key``, ``vdm.key`` and ``bridge.key`` say which explicitly.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
import tomllib
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from vsynth.core.host.param_errors import describe
from vsynth.core.host.specs import Params
from vsynth.errors import ConfigFileError, InvalidParamsError, UnknownNameError, VsynthInputError, shorten

DEFAULT_BRIDGE = "mixed-inversion"
PLAIN_BRIDGE = "none"


def chosen_bridge(bridge: str | None, idm: str | None) -> str:
    """The bridge a run takes: the one named, else Mixed Inversion with an IDM and plain text-to-video without."""
    return bridge or (DEFAULT_BRIDGE if idm else PLAIN_BRIDGE)

# Limits of a run, said in --help and in the error: beyond them a run cannot fit in memory or
# the models were never meant for it (SD-family UNets are trained at 512-768 pixels).
MAX_SIDE = 2048
MAX_FRAMES = 257  # 1 + 256: the longest clip of LTX-Video (1 + 8k frames), and of the 1 + 4k rule (Wan, HunyuanVideo)
MAX_GUIDANCE = 50.0
MAX_SEED = 2**64 - 1  # torch's generator takes seeds in [0, 2**64); -1 is not "random": runs are reproducible


class RunConfig(BaseModel):
    """Everything that defines a run; unset values resolve to the official BIVDiff defaults or the models' own."""

    model_config = ConfigDict(extra="forbid")

    idm: str | None = Field(None, description="Image diffusion model name; none for plain text-to-video.")
    vdm: str | None = Field(None, description="Video diffusion model name; none only with a bridge that uses no video model (idm-only).")
    bridge: str | None = Field(None, description="Bridging strategy; default: mixed-inversion with an IDM, else none.")
    video: Path | None = Field(None, description="Source video: mp4, gif or a folder of frames.")
    prompt: str = Field(description="Prompt of the video model, and of the image model unless idm_prompt is set.")
    condition_video: Path | None = Field(None, description="Precomputed control maps (pose, edges, depth) instead of computing them.")
    mask: Path | None = Field(None, description="Inpainting mask video: white = regenerate.")
    outpaint: str | None = Field(None, description="Outpainting: horizontal, vertical or TOP,RIGHT,BOTTOM,LEFT fractions.")
    source_prompt: str | None = Field(None, description="What the source video shows (Prompt-to-Prompt editing).")
    idm_prompt: str | None = Field(None, description="Prompt of the image model; default: prompt.")
    negative_prompt: str = ""
    frames: int = Field(8, ge=1, le=MAX_FRAMES)
    stride: int | None = Field(
        None, ge=1, description="Take every K-th source frame; default 4 (as BIVDiff), 1 with toy (its models learnt motion frame by frame)."
    )
    height: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Default: 512 with an IDM (as BIVDiff), else the VDM's native size."
    )
    width: int | None = Field(None, ge=1, le=MAX_SIDE)
    steps: int | None = Field(
        None, ge=1, description="Steps of the IDM, and of the VDM unless it fixes its own; default 50; at most the models' train steps."
    )
    guidance: float | None = Field(
        None, gt=0, le=MAX_GUIDANCE, allow_inf_nan=False, description="Guidance of the IDM, and of the VDM unless it fixes its own; default 7.5."
    )
    vdm_steps: int | None = Field(None, ge=1, description="Steps of the VDM alone.")
    vdm_guidance: float | None = Field(None, gt=0, le=MAX_GUIDANCE, allow_inf_nan=False, description="Guidance of the VDM alone.")
    fit: Literal["round", "strict"] = Field(
        "round", description="Frames and sizes the models' latent spaces cannot hold: round them down with a notice, or refuse."
    )
    idm_scheduler: str | None = Field(None, description="Solver of the image model (ddim, euler, euler-a, dpm++, unipc, lcm, heun); default: its own.")
    vdm_scheduler: str | None = Field(None, description="Solver of the video model, as idm_scheduler; default: its own.")
    seed: int = Field(42, ge=0, le=MAX_SEED)
    options: dict[str, Any] = Field(default_factory=dict, description="key=value params of the models and bridge.")
    idm_weights: str | None = None
    vdm_weights: str | None = None
    tiny: bool = False
    toy: bool = Field(False, description="Run the toy world's trained models (64x64, a small vocabulary) instead of the real weights.")
    save_latents: bool = False
    device: str = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Weights and activations: auto is float16 on a GPU, float32 on the CPU."
    )
    offload: Literal["none", "model", "sequential", "group"] = Field(
        "none", description="Keep weights in host memory and move them to the GPU as they run: whole models, layer by layer, "
        "or in groups of blocks prefetched on CUDA streams (diffusers' group offloading)."
    )
    compile: bool = Field(False, description="torch.compile the UNets (slow first steps, faster after).")
    idm_lora: list[str] = Field(default_factory=list, description="LoRAs of the image model: PATH_OR_ID[:SCALE] or a preset name of the model.")
    vdm_lora: list[str] = Field(default_factory=list, description="LoRAs of the video model, as idm_lora.")
    fuse_lora: bool = Field(False, description="Fuse the LoRAs into the weights (no cost per step) instead of keeping them as adapters.")
    quantize: Literal["none", "int8", "fp8", "nf4"] = Field(
        "none", description="Quantize the denoising networks' weights: int8 or fp8 weight-only (torchao), nf4 (bitsandbytes, GPU only)."
    )
    cache: str | None = Field(None, description="Step cache of every model it applies to (first-block, taylorseer, magcache, pab, fastercache for transformers; deepcache, tome for UNets).")
    idm_cache: str | None = Field(None, description="Step cache of the image model alone (none: off); refused if it does not apply.")
    vdm_cache: str | None = Field(None, description="Step cache of the video model alone (none: off); refused if it does not apply.")
    memory_check: bool = Field(True, description="Refuse a run whose estimated peak memory exceeds the device's free memory.")
    trust_pickles: bool = Field(
        False, description="Load weights stored as pickles (.bin, .pt, .pth, .ckpt), which can run code when loaded; default: refuse them."
    )
    out: Path | None = None
    metrics: list[str] | None = Field(
        None, description="Metrics measured after the run (names, 'default', 'all'; see `vsynth models --kind metric`); default: the cheap default set."
    )

    def __init__(self, **values: Any):
        """Python callers get the same typed, one-line error as the CLI, not pydantic's report."""
        if isinstance(values.get("options"), dict):  # options={"idm": {"batch_size": 2}}, as a config file may nest them
            values["options"] = flatten_options(values["options"])
        _check_text(values)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidParamsError(describe(exc, type(self))) from None

    @field_validator("idm", "vdm", "bridge", "out", "source_prompt", "video", "condition_video", "mask", mode="before")
    @classmethod
    def _not_empty(cls, value: Any, info) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"is empty: {EMPTY_HINTS[info.field_name]}")
        return value

    @field_validator("video", "condition_video", "mask", "out")
    @classmethod
    def _home_expanded(cls, value: Path | None) -> Path | None:
        """``~/clip.mp4`` is in the home folder, quoted, in a config file or from Python as in a shell."""
        return None if value is None else value.expanduser()

    @field_validator("idm_lora", "vdm_lora", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """One LoRA may be written alone (``vdm_lora: file.safetensors`` in a config file), several as a list."""
        return [value] if isinstance(value, str) else value

    @field_validator("frames", "stride", "height", "width", "steps", "vdm_steps", "seed", "guidance", "vdm_guidance", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any, info) -> Any:
        """pydantic takes true for 1; in a run setting (``frames: true``) it is a mistake. Numbers written as
        text (CSV cells) stay numbers."""
        if isinstance(value, bool):
            raise PydanticCustomError("float_type" if info.field_name.endswith("guidance") else "int_type", "a bool is not a number")
        return value

    @field_validator("out", "video", "condition_video", "mask", "idm_weights", "vdm_weights")
    @classmethod
    def _names_fit(cls, value: Path | str | None, info) -> Path | str | None:
        """Names too long for the file system fail every look at them (ENAMETOOLONG): said here, in one line."""
        from vsynth.core.run.validate import PARTIAL_NAME_EXTRA, check_name_lengths

        if value is not None:
            check_name_lengths(value, PARTIAL_NAME_EXTRA if info.field_name == "out" else 0)
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_names(cls, value: Any) -> Any:
        """``"a,b"`` (a flag, a CSV cell) or a list; an empty list is refused in one line."""
        from vsynth.core.run.measure import parse_names

        return value if value is None or not isinstance(value, (str, list, tuple)) else parse_names(value)

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


EMPTY_HINTS = {
    "idm": "name an image model (see `vsynth models --kind idm`), or leave --idm out for text-to-video",
    "vdm": "name a video model (see `vsynth models --kind vdm`)",
    "bridge": "name a bridge (see `vsynth models --kind bridge`), or leave --bridge out for the default",
    "source_prompt": "say what the source video shows (the edit changes it into --prompt)",
    "video": "name a video file or a folder of frames ('.' for the current one)",
    "condition_video": "name a video of control maps, or drop --condition-video",
    "mask": "name a mask video or image, or drop --mask",
    "out": "name a folder, or drop --out for a new folder under outputs/",
}


def _check_text(values: dict[str, Any]) -> None:
    """Refuse text, paths and options that cannot be UTF-8, naming the first bad byte as ``\\xff``.

    Python keeps bytes of argv that are not UTF-8 as lone surrogates (surrogateescape), and a YAML or
    JSON ``\\udcff`` escape makes one; no tokenizer encodes them, and run.json, which records every
    setting, cannot hold them.
    """
    options = values.get("options")
    labelled = [(f"--{key.replace('_', '-')}", value) for key, value in values.items() if key != "options"]
    labelled += [(f"-o {key}", value) for key, value in options.items()] if isinstance(options, dict) else []
    for label, value in labelled:
        text = os.fspath(value) if isinstance(value, PurePath) else value
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(text[exc.start])
            code = f"the byte \\x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"a lone surrogate \\u{bad:04x}"
            raise InvalidParamsError(
                f"{label}: character {exc.start + 1} is {code}, which is not UTF-8; write it in UTF-8 (set the "
                "terminal's or the file's encoding to UTF-8, or rename a file so named)"
            ) from None


def make_config(values: dict[str, Any]) -> RunConfig:
    return RunConfig(**values)


# What parsing a YAML, TOML, JSON or CSV document can raise on bad content: RecursionError from a
# document nested deeper than the parsers' recursion allows (``[[[[...`` a few thousand deep).
DOCUMENT_ERRORS = (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError, csv.Error, UnicodeDecodeError, RecursionError)


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping that names one key twice: YAML says it is an error, PyYAML keeps the last silently."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        """The keys the mapping writes out, each once; a merge (``<<: *base``) may still be overridden by them."""
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a sequence or mapping as a key: SafeLoader's own error says so
            if key in seen:
                raise DuplicateKeyError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """yaml.safe_load, refusing a key given twice in one mapping (as TOML does) instead of keeping the last."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def document_error(exc: Exception) -> str:
    """Why a document did not parse, in a few words."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply (lists or mappings inside each other, thousands of levels)"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file holding RunConfig keys."""
    from vsynth.core.run.validate import check_name_lengths

    path = Path(path).expanduser()
    try:
        check_name_lengths(path)
    except ValueError as exc:
        raise ConfigFileError(f"config file {path}: {exc}") from None
    if not path.is_file():
        raise ConfigFileError(f"config file {path} is a folder: give a .yaml or .toml file" if path.is_dir() else f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Windows editors start UTF-8 files with a BOM
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else load_yaml(text)
    except DOCUMENT_ERRORS as exc:
        raise ConfigFileError(f"cannot parse config file {path}: {document_error(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VsynthInputError(f"config file {path} must hold a mapping of run settings")
    _check_keys(data, path, "")
    options = data.get("options", {})
    if options is None:  # every entry commented out
        options = data["options"] = {}
    if not isinstance(options, dict):
        raise VsynthInputError(f"config file {path}: options must be a mapping of key: value (got {options!r})")
    _check_keys(options, path, "options.")
    data["options"] = flatten_options(options)
    return underscored(data, f"config file {path}", ConfigFileError)


def underscored(data: dict, where: str, error: type[Exception] = ConfigFileError) -> dict:
    """``data``'s settings under their Python names (``save-latents`` is ``save_latents``); both spellings of one
    setting in one mapping are refused, as one of them was dropped silently (which one: the file's order)."""
    settings: dict[Any, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name in settings:
            twin = next(k for k in data if k != key and (k.replace("-", "_") if isinstance(k, str) else k) == name)
            raise error(f"{where}: '{twin}' and '{key}' are one setting; keep one")
        settings[name] = value
    return settings


def flatten_options(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested option mappings as dotted keys: ``{idm: {batch_size: 2}}`` (YAML) and TOML's ``idm.batch_size = 2``
    under ``[options]`` are ``idm.batch_size``, as ``-o idm.batch_size=2`` writes it."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(key, str):
            flat.update(flatten_options(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}" if prefix else key] = value  # a key that is not text is refused as it was given
    return flat


def _check_keys(mapping: dict, path: Path, prefix: str) -> None:
    for key in mapping:
        if not isinstance(key, str):
            raise VsynthInputError(f"config file {path}: key {prefix}{key!r} must be a name (text), e.g. {prefix}frames")


_DECIMAL = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a number (as Python reads it: 010 is 10, 1e1 is 10.0), a YAML
    bool or null (true, no, null; ``None`` as ``vsynth models`` shows it), else the text as typed.

    YAML 1.1's other readings would surprise: 010 is octal 8, 1:00 is 60, 0x10 is 16, ``#`` starts a comment
    (``my #1.png`` read as ``my``), 2020-01-01 is a date; those stay text, which a number param then refuses."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise VsynthInputError(f"option '{shorten(text)}' must look like key=value")
    return key.strip(), parse_value(raw)


def parse_value(raw: str) -> Any:
    """An option's value from its text (:func:`parse_option`)."""
    text = raw.strip()
    if not text:
        return ""
    if _DECIMAL.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text == "None":
        return None
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):  # not a YAML scalar (or nested thousands deep): the text itself
        return raw
    if isinstance(value, bool) or (value is None and text in ("null", "Null", "NULL", "~")) or isinstance(value, float):
        return value  # true/yes/off; null; .inf and .nan (refused later as not finite)
    if isinstance(value, (list, dict)) or (isinstance(value, str) and text[:1] in "'\""):
        return value  # a list, a mapping, or text the user quoted
    return text


def route_options(
    options: dict[str, Any], params: dict[str, type[Params]], extra: dict[str, set[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Send each option to the role whose params model declares it, or whose ``extra`` keys (weights
    roles) name it; refuse unknown or ambiguous keys."""
    routed: dict[str, dict[str, Any]] = {role: {} for role in params}
    known = {role: set(model.model_fields) | (extra or {}).get(role, set()) for role, model in params.items()}
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
            raise UnknownNameError(f"unknown option '{shorten(key)}': {hint}known options: {', '.join(qualified)}")
        if len(owners) > 1:
            raise UnknownNameError(
                f"option '{key}' is a parameter of {' and '.join(owners)}: write {' or '.join(f'{o}.{key}' for o in owners)}"
            )
        if name in routed[owners[0]]:  # KEY and ROLE.KEY both given: which one won depended on the mapping's order
            raise UnknownNameError(f"option '{key}' sets {owners[0]}.{name}, which another -o (or the config file's options) sets too: give it once")
        routed[owners[0]][name] = value
    return routed


def validate_params(model: type[Params], values: dict[str, Any], role: str, options: dict[str, Any] | None = None) -> Params:
    """``values`` validated by ``model``; an error names the option as the user wrote it in ``options``
    (``-o idm.strength=2``, not ``strength``)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        typed = {name: f"{role}.{name}" for name in values if f"{role}.{name}" in (options or {})}
        raise InvalidParamsError(describe(exc, model, option=True, role=role, typed=typed)) from None

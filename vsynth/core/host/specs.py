"""Metadata that plugins register: what a model or bridge is, never how it runs.

Specs are cheap to build and import no torch, so ``vsynth models`` can list every model of every
installed plugin in well under a second. The implementation named by ``impl`` is imported only
when a run needs it.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, model_validator

from vsynth.errors import PluginError

ModelKind = Literal["idm", "vdm"]

# Letters, digits, '-', '_' and '.': a '/' would make ``plugin/name`` ambiguous.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5


def _takes_bool(annotation) -> bool:
    import typing

    if annotation is bool or annotation is Any or annotation is True or annotation is False:
        return True
    return any(_takes_bool(arg) for arg in typing.get_args(annotation))


def refuse_bool_number(model: type[BaseModel], value: Any, info) -> Any:
    """pydantic takes true for 1: ``-o window=true`` ran with a window of 1 frame. A bool goes only where one is taken."""
    if isinstance(value, bool):
        field = model.model_fields.get(info.field_name)
        if field is not None and not _takes_bool(field.annotation):
            from pydantic_core import PydanticCustomError

            raise PydanticCustomError("bool_not_number", "must be a number or a choice, not true or false")
    return value


class Params(BaseModel):
    """Base class of every params model: unknown keys are an error, never silently ignored, and
    every float is finite (an ``inf`` strength or ratio would silently give a black video)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _no_bool_for_a_number = field_validator("*", mode="before")(classmethod(lambda cls, v, info: refuse_bool_number(cls, v, info)))

    def check_plan(self, sampling) -> None:
        """Check these params against the run's resolved sampling (steps, guidance of both models),
        before any weights load; raise :class:`~vsynth.errors.VsynthInputError` with one line.

        For checks that one params model cannot make alone, e.g. a bridge's step count that must
        fit within the VDM's steps. Nothing to check by default.
        """

    def for_models(self, idm: ModelSpec | None, vdm: ModelSpec | None, given: set[str]) -> Params:
        """These params as they apply to the run's models, before :meth:`check_models`: a default that cannot
        work with them may be changed (with a :class:`~vsynth.errors.VsynthWarning` saying so), never a value
        the user ``given``. Unchanged by default."""
        return self

    def check_inputs(self, inputs: set[str], idm: ModelSpec | None, bridge: BridgeSpec, given: set[str]) -> None:
        """Check these params against the run's inputs (``inputs``: which of "video", "condition_video", "mask"
        it has; ``--outpaint`` counts as "mask"), its IDM and bridge, before any weights load; ``given`` are the
        options the user set.
        Raise :class:`~vsynth.errors.VsynthInputError` with one line, or warn of an input these params leave
        unused. Nothing by default.

        For an option whose value needs an input: -o first_frame=source holds --video's first frame.
        """

    def check_models(self, idm: ModelSpec | None, vdm: ModelSpec | None) -> None:
        """Check these params against the run's models (their process, latent space, architecture), before
        any weights load; raise :class:`~vsynth.errors.VsynthInputError` with one line. Nothing by default.
        ``vdm`` (as in :meth:`for_models`) is None with a bridge that uses no video model (idm-only).

        For a bridge option that needs what an architecture lacks: feature injection needs a UNet's
        decoder features, which a transformer does not have.
        """


class VideoParams(Params):
    """Base of every VDM's params: it also decides how the VDM samples.

    ``--steps``/``--guidance`` are shared by both models; ``--vdm-steps``/``--vdm-guidance`` (and,
    with no IDM, ``--steps``/``--guidance``) are meant for the VDM alone. A VDM with fixed
    sampling (a distilled checkpoint) overrides :meth:`sampling` to refuse what it cannot do.

    ``window`` and the fields after it say how the VDM takes clips longer than it was trained on
    (:mod:`vsynth.core.diffusion.windows`); a VDM sets ``window`` to its trained length.
    """

    window: PositiveInt | None = Field(
        None, description="Frames denoised at once; longer clips go in overlapping windows, blended. None: the whole clip at once."
    )
    overlap: NonNegativeInt = Field(4, description="Frames neighbouring windows share, at least; below window.")
    blend: Literal["uniform", "tapered"] = Field(
        "uniform", description="Overlapping windows' predictions averaged equally, or weighted toward each window's centre."
    )
    noise: Literal["independent", "freenoise"] = Field(
        "independent", description="Initial noise drawn for every frame, or FreeNoise's shuffled repeats of the first window's."
    )

    @model_validator(mode="after")
    def _overlap_below_window(self):
        if self.window is not None and self.overlap >= self.window:
            raise ValueError(f"overlap {self.overlap} must be smaller than window {self.window}: lower -o overlap")
        return self

    def sampling(
        self, steps: int | None, guidance: float | None, *, shared_steps: int | None, shared_guidance: float | None
    ) -> tuple[int, float]:
        """(steps, guidance) of the VDM from explicit VDM values, else the shared ones, else the defaults."""
        steps = steps if steps is not None else shared_steps
        guidance = guidance if guidance is not None else shared_guidance
        return (steps or DEFAULT_STEPS, DEFAULT_GUIDANCE if guidance is None else guidance)


class SpecError(PluginError):
    """A spec built with a wrong field, said in plain words: which spec, which field, what it must be."""


def _describe_spec_error(cls: type[BaseModel], values: dict[str, Any], exc: ValidationError) -> str:
    """``idm spec 'a/b': name 'a/b' may hold only ...`` from pydantic's report, one clause per error."""
    clauses = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "spec"
        shown = repr(err["input"]) if len(repr(err["input"])) <= 60 else repr(err["input"])[:57] + "..."
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            description = cls.model_fields[str(err["loc"][0])].description if len(err["loc"]) == 1 else None
            clauses.append(f"{field} is missing" + (f" ({description})" if description else ""))
        elif err["type"] == "string_pattern_mismatch" and field == "name":
            clauses.append(
                f"name {shown} may hold only letters, digits, '-', '_' and '.', starting with a letter or digit "
                "(no '/': users type plugin/name to pick one plugin's)"
            )
        elif err["type"] == "extra_forbidden":
            import difflib

            close = difflib.get_close_matches(field, list(cls.model_fields), n=1)
            clauses.append(f"{field}: no such field" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif err["type"] == "literal_error":
            clauses.append(f"{field} {shown} must be one of {err['ctx']['expected']}")
        elif err["type"] == "value_error":
            clauses.append(message)
        else:
            clauses.append(f"{field} {shown}: {message[:1].lower()}{message[1:]}")
    return f"{cls.spec_label(values)}: " + "; ".join(clauses)


class _PlainErrors(BaseModel):
    """A spec whose constructor says what is wrong in plain words (a :class:`SpecError`), not as pydantic's report:
    plugins build specs in their hooks, and `vsynth plugins` / `vsynth install` show the line."""

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SpecError(_describe_spec_error(type(self), values, exc)) from None

    @classmethod
    def spec_label(cls, values: dict[str, Any]) -> str:
        kind_field = cls.model_fields.get("kind")
        kind = values.get("kind") or (kind_field.default if kind_field is not None and isinstance(kind_field.default, str) else "model")
        return f"{kind} spec {values.get('name', '?')!r}"


class WeightsSpec(_PlainErrors):
    """One set of diffusers-format weights a model loads (a hub id or a local directory)."""

    model_config = ConfigDict(frozen=True)

    role: str = Field(description="What these weights are in the model, e.g. 'controlnet' or 'base'.")
    id: str = Field(description="Default hub id, loaded with from_pretrained.")
    size_gb: float = Field(description="Approximate download size, in GB.")
    files: tuple[str, ...] = Field(
        (),
        description="Files these weights need, relative to the repo or folder, checked before anything loads; 'a|b' means "
        "either; '{name}' is filled from the model's params (vsynth.core.host.layouts builds the usual lists).",
    )
    tiny: str | None = Field(None, description="Name of the offline tiny stand-in in vsynth.tiny.")
    inversion_only: bool = Field(
        False,
        description="Used only by the IDM's inversion denoiser (BIVDiff's image inversion with plain SD1.5): not loaded "
        "when the run's bridge never inverts with the IDM.",
    )
    toy: str | None = Field(None, description="Name of the trained toy-world stand-in shipped in vsynth/toy/weights (--toy).")
    only_with: tuple[str, str] | None = Field(
        None,
        description="(param, value): used only when the model's param has that value (VACE's depth estimator with -o "
        "control=depth); otherwise neither located nor loaded.",
    )

    def used_with(self, options: dict[str, object]) -> bool:
        """Whether a run with these params (its -o options) needs these weights."""
        return self.only_with is None or options.get(self.only_with[0]) == self.only_with[1]

    @classmethod
    def spec_label(cls, values: dict[str, Any]) -> str:
        return f"weights spec {values.get('role', '?')!r}"


class LoraPreset(_PlainErrors):
    """A published LoRA a model's users can name by ``--idm-lora NAME`` / ``--vdm-lora NAME``: its weights, and
    the sampling it was distilled for (few-step distillations set solver, steps and guidance together)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="What users type, e.g. 'lcm-4step'.")
    id: str = Field(description="Hub id of the repo holding the LoRA.")
    file: str = Field(description="The safetensors file in that repo.")
    size_gb: float = Field(description="Download size, in GB.")
    scale: float = Field(1.0, description="The strength it is applied with unless NAME:SCALE says otherwise.")
    solver: str | None = Field(None, description="The solver it was distilled for (--idm-scheduler / --vdm-scheduler), unless the user chose one.")
    steps: PositiveInt | None = Field(None, description="Its steps, unless the user chose them.")
    guidance: float | None = Field(None, description="Its guidance (1.0: off), unless the user chose it.")
    description: str = ""

    @classmethod
    def spec_label(cls, values: dict[str, Any]) -> str:
        return f"LoRA preset {values.get('name', '?')!r}"


class LatentSpace(BaseModel):
    """The latent space a model's codec (its VAE) works in, declared so that frame counts and sizes are
    checked, and latents passed or transcoded, before anything loads.

    ``name`` names a trained latent space: models whose spaces are equal (name and numbers) pass
    latents to each other as they are (SD1.5, ZeroScope, ModelScope and AnimateDiff were all
    trained on the latents of SD's KL-f8 VAE); between different spaces a bridge transcodes through
    pixels (decode with one codec, encode with the other), counted in run.json.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The trained latent space, e.g. 'sd-vae' (SD's KL-f8 VAE), 'wan2.1-vae', 'flux-vae'.")
    channels: PositiveInt = Field(4, description="Latent channels.")
    spatial: PositiveInt = Field(8, description="Pixels per latent pixel, along each side.")
    temporal: PositiveInt = Field(1, description="Frames per latent frame (1: frames are encoded one by one).")
    causal: bool = Field(False, description="The first frame is encoded alone (Wan, CogVideoX, LTX): a clip holds 1 + temporal * k frames.")
    size_multiple: PositiveInt = Field(8, description="Frame sides must be multiples of this (the VAE's factor times the network's patch and packing).")
    scaling: float = Field(0.18215, description="Latents are multiplied by this after encoding.")
    shift: float = Field(0.0, description="...and shifted by this before scaling (FLUX, SD3).")
    mean: tuple[float, ...] | None = Field(None, description="Per-channel mean subtracted after encoding (Wan), instead of a shift.")
    std: tuple[float, ...] | None = Field(None, description="Per-channel std divided after encoding (Wan), instead of a scaling.")
    packing: PositiveInt = Field(1, description="Side of the latent patches a transformer packs into tokens (FLUX: 2); the model packs them.")

    def fit_frames(self, frames: int) -> int:
        """The most frames at most ``frames`` that the space holds (1 + temporal * k when causal, a multiple of temporal otherwise)."""
        if self.temporal == 1:
            return frames
        if self.causal:
            return 1 + (frames - 1) // self.temporal * self.temporal
        return max(self.temporal, frames // self.temporal * self.temporal)

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.temporal if self.causal else -(-frames // self.temporal)

    def frame_rule(self) -> str:
        if self.temporal == 1:
            return "any number of frames"
        return f"1 + {self.temporal}k frames" if self.causal else f"a multiple of {self.temporal} frames"


SD_LATENTS = LatentSpace(name="sd-vae")


def _check_impl(value: str) -> str:
    module, sep, attr = value.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"impl must look like 'package.module:ClassName', got {value!r}")
    return value


RUN_INPUTS = ("video", "condition_video", "mask", "outpaint", "source_prompt")  # what a spec's needs / accepts may name


def _check_inputs_named(names: tuple[str, ...]) -> tuple[str, ...]:
    """``needs`` / ``accepts`` name run inputs, ``a|b`` for either: a typo would fail every run, not the plugin's loading."""
    for need in names:
        for name in need.split("|"):
            if name not in RUN_INPUTS:
                raise ValueError(f"{name!r} is not a run input; inputs are {', '.join(RUN_INPUTS)} ('a|b' for either)")
    return names


def _check_param_defaults(params: type) -> type:
    """Every param has a default that its own constraints take: a run without -o is validated by them only when given."""
    from pydantic_core import PydanticUndefined

    fields = getattr(params, "model_fields", {})
    bare = [name for name, f in fields.items() if f.default is PydanticUndefined and f.default_factory is None]
    if bare:
        raise ValueError(f"params {params.__name__}: {', '.join(bare)} has no default (each param needs one: runs leave it out)")
    from pydantic import TypeAdapter

    for name, f in fields.items():
        try:
            TypeAdapter(f.rebuild_annotation()).validate_python(f.get_default(call_default_factory=True))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"params {params.__name__}: the default of {name} fails its own check: {reason[:1].lower()}{reason[1:]}") from None
        except Exception:  # noqa: BLE001 - a type pydantic cannot build an adapter for alone: the model checks it
            continue
    return params


class _Spec(_PlainErrors):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Short name users type, e.g. 'controlnet-canny'; no '/'.")
    description: str
    params: type[Params] = Params
    impl: str = Field(description="'package.module:ClassName' of the implementation, imported lazily.")
    plugin: str = Field("", description="Filled in by the registrar: the plugin that registered it.")

    _validate_impl = field_validator("impl")(classmethod(lambda cls, v: _check_impl(v)))
    _validate_params = field_validator("params")(classmethod(lambda cls, v: _check_param_defaults(v)))

    @property
    def qualified_name(self) -> str:
        """``plugin/name``: the name that stays unambiguous when two plugins register one short name."""
        return f"{self.plugin}/{self.name}"

    def load_impl(self) -> type:
        """Import and return the implementation class (this is where torch gets imported)."""
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)

    def param_schema(self) -> dict[str, Any]:
        """Parameters as ``{name: {type, default, description}}`` for listings."""
        schema = self.params.model_json_schema()
        out = {}
        for key, field in self.params.model_fields.items():
            prop = schema.get("properties", {}).get(key, {})
            out[key] = {
                "type": prop.get("type") or " | ".join(p.get("type", "?") for p in prop.get("anyOf", [])),
                "default": field.default,
                "description": field.description or "",
            }
        return out


class ModelSpec(_Spec):
    """An image (``idm``) or video (``vdm``) diffusion model."""

    kind: ModelKind
    task: str | None = Field(None, description="The task an IDM serves, e.g. 'controllable-generation'.")
    weights: tuple[WeightsSpec, ...] = Field(description="Weights it loads; the first is what --idm/--vdm-weights replaces.")
    bridge_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-bridge parameter defaults this model asks for, e.g. BIVDiff's mixing ratio per task.",
    )
    needs: tuple[str, ...] = Field(
        (),
        description="Run inputs an IDM requires (video, condition_video, mask, outpaint, source_prompt); 'a|b' means either.",
    )
    accepts: tuple[str, ...] = Field((), description="Run inputs an IDM uses when given, besides those it needs.")
    _inputs_named = field_validator("needs", "accepts")(classmethod(lambda cls, v: _check_inputs_named(v)))
    native_size: tuple[int, int] | None = Field(None, description="(height, width) the model was trained at.")
    max_frames: int | None = Field(None, description="Most frames the model can denoise at once: caps its window, or without one the clip.")
    fps: float | None = Field(None, description="Frame rate it was trained at: a text-to-video run's output rate (a source video's otherwise).")
    sampler: str = Field("DDIM, 50 steps, guidance 7.5", description="How the model samples by default.")
    process: Literal["vp-eps", "vp-v", "vp-sample", "flow"] = Field(
        "vp-eps",
        description="Its noise process and what its network predicts: variance-preserving with eps, v or the clean "
        "sample, or rectified flow (velocity). Decides which solvers fit (vsynth.core.diffusion.processes).",
    )
    solver: str = Field("ddim", description="The solver it samples with by default, by the name --idm-scheduler / --vdm-scheduler take.")
    latent_space: LatentSpace = Field(SD_LATENTS, description="The latent space of its codec: channels, compression, frame and size rules.")
    architecture: Literal["unet", "transformer"] = Field(
        "unet", description="What its denoiser runs: a UNet (with decoder features a bridge may inject into) or a transformer."
    )
    train_timesteps: int = Field(1000, description="Timesteps of its training schedule: the most steps it can sample with.")
    guidance: Literal["classifier-free", "distilled", "none"] = Field(
        "classifier-free",
        description="What --guidance means for it: the scale of classifier-free guidance (a conditional and an unconditional "
        "prediction per step), of a distilled guidance embedding (one prediction per step: FLUX dev), or nothing (a "
        "guidance-free checkpoint: FLUX schnell, few-step distillations).",
    )
    default_steps: PositiveInt | None = Field(None, description="Its steps when --steps is not given; None: vsynth's 50.")
    default_guidance: float | None = Field(
        None, description="Its guidance when --guidance is not given (as its diffusers pipeline); None: vsynth's 7.5."
    )
    loras: tuple[LoraPreset, ...] = Field(
        (), description="Published LoRAs users can name (--idm-lora NAME, --vdm-lora NAME): distillations set solver, steps, guidance."
    )

    @property
    def size_gb(self) -> float:
        """Its download with the default params (weights needed only for another param value are not counted)."""
        return round(sum(w.size_gb for w in self.weights if w.only_with is None), 2)


class BridgeSpec(_Spec):
    """A bridging strategy: how an IDM and a VDM are composed into one video."""

    kind: Literal["bridge"] = "bridge"
    paper: str = ""
    needs_idm: bool = Field(True, description="Whether the bridge uses an image model.")
    accepts_idm: bool = Field(
        False, description="With needs_idm false: an image model may still be given, and the bridge composes it when it is (flow-edit)."
    )
    needs_vdm: bool = Field(
        True, description="Whether the bridge uses a video model; when not (idm-only), --vdm may be left out, and a given one is not loaded."
    )
    needs: tuple[str, ...] = Field((), description="Run inputs the bridge itself requires (e.g. source_prompt); 'a|b' means either.")
    _inputs_named = field_validator("needs")(classmethod(lambda cls, v: _check_inputs_named(v)))
    video: Literal["required", "optional", "unused"] = Field(
        "optional", description="Whether the bridge itself needs a source video; 'optional' leaves it to the IDM."
    )
    task: str | None = Field(None, description="The task when the bridge defines it (e.g. text-to-video); else the IDM's.")
    image_inversion: bool = Field(
        True, description="Whether the bridge uses the IDM's inversion_denoiser; when not, weights only it needs are not loaded."
    )
    video_noise: bool = Field(
        True, description="Whether the VDM starts from noise the bridge draws (its -o noise shapes it); false when it starts "
        "from an inversion (mixed-inversion), where -o noise=freenoise is said unused."
    )
    hands_frames: bool = Field(
        False, description="Whether the bridge hands the IDM's frames to the VDM (VideoModel.condition_on_frames), which a VDM "
        "that holds frames (-o first_frame=idm) needs."
    )


MetricNeed = Literal["prompt", "source", "condition", "truth"]


class MetricSpec(_Spec):
    """A metric: a number measured on a video, from what a run or a video file offers.

    ``needs`` says what it reads besides the frames: the prompt, the source video, the condition
    (control maps and the detector that made them), or ground truth (a :class:`WorldSpec` provides
    it, e.g. the toy world's shapes and motion). A metric whose needs a video cannot meet is left
    out of that video's results, with the reason. Its implementation (``impl``) subclasses
    :class:`vsynth.core.run.measure.Metric`.
    """

    kind: Literal["metric"] = "metric"
    needs: tuple[MetricNeed, ...] = Field((), description="What it reads besides the frames: prompt, source, condition, truth.")
    weights: tuple[WeightsSpec, ...] = Field((), description="Networks it loads (CLIP, RAFT, a detector); none for a plain formula.")
    default: bool = Field(False, description="Measured on every run unless --metrics says otherwise: cheap (no weights, seconds).")
    higher_is_better: bool | None = Field(None, description="Which way is better, for tables and comparisons; None: neither.")
    unit: str = Field("", description="What the number is, e.g. '0..1 of 255', 'cosine x 100', 'pixels per frame'.")

    @property
    def size_gb(self) -> float:
        return round(sum(w.size_gb for w in self.weights), 2)


class WorldSpec(_Spec):
    """A data world that knows the ground truth of its own videos (the toy world), and may ship trained weights.

    Its implementation (``impl``) answers, for a video on disk, whether it is one of the world's
    and with what ground truth; metrics that need ``truth`` read what it returns. The run pipeline
    reaches a world only through this spec, so it knows no data set by name.
    """

    kind: Literal["world"] = "world"
    size: tuple[int, int] | None = Field(None, description="(height, width) its weights were trained at: a run's default size with them.")
    stride: int | None = Field(
        None, ge=1, description="The source stride its weights were trained at (clips whose motion is per frame): a run's default stride with them."
    )

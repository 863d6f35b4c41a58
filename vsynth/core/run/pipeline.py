"""One run, from a validated config to a written output folder.

``plan_run`` checks everything a user can get wrong (names, options, inputs, frame window,
output folder, weights) without loading a model; ``execute`` loads the models, prepares the
inputs, lets the bridge compose them, decodes and writes. Read top to bottom, this is the whole run.
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from vsynth.version import __version__
from vsynth.core.media import video as videoio
from vsynth.core.diffusion import caches as step_caches
from vsynth.core.diffusion import gguf, lora, quantize, solvers
from vsynth.core.run import validate
from vsynth.core.run.config import RunConfig, chosen_bridge, route_options, validate_params
from vsynth.core.media.outputs import PARTIAL_MARKER, OutputFolder, choose_out_dir, output_folder
from vsynth.core.media.masks import is_still
from vsynth.core.run.progress import Stages, compiling, library_progress_bars, quiet_library_fallbacks
from vsynth.core.host.registry import BUILTIN, Registry, get_registry, plugin_errors
from vsynth.core.host.specs import BridgeSpec, DEFAULT_GUIDANCE, DEFAULT_STEPS, ModelSpec, Params, VideoParams
from vsynth.core.run.memory import check_fits, estimate as estimate_memory, fit_vae_batch
from vsynth.core.diffusion.weights import hub_offline, hub_reachable, locate, needs_hub, refuse_pickles, resolve_sources, weight_flags, weights_options
from vsynth.errors import InvalidParamsError, NonFiniteError, OutputWriteError, VideoError, VsynthInputError, VsynthWarning
from vsynth.core.run import measure

if TYPE_CHECKING:
    from vsynth.core.diffusion.inputs import Sources
    from vsynth.core.run.memory import MemoryEstimate

BIVDIFF_SIZE = (512, 512)
BIVDIFF_STRIDE = 4
DEFAULT_FPS = 8.0
GIF_MAX_FRAMES = 48  # longer runs get every k-th frame in video.gif; video.mp4 has them all


@dataclass(frozen=True)
class Sampling:
    steps: int  # the IDM's
    guidance: float
    vdm_steps: int
    vdm_guidance: float


@dataclass
class RunPlan:
    """A run whose every input has been checked; nothing heavy is loaded yet."""

    config: RunConfig
    idm: ModelSpec | None
    vdm: ModelSpec | None  # None with a bridge that uses no video model (idm-only)
    bridge: BridgeSpec
    params: dict[str, Params]  # by role: "idm" (when there is one), "vdm", "bridge"
    sources: dict[str, dict[str, str]]  # by role, then weights role -> folder or hub id
    sampling: Sampling
    video: videoio.VideoInfo | None
    height: int
    width: int
    out_dir: Path
    frames: Sources  # every source frame the run needs, read and checked while planning
    device: str  # resolved: cpu, cuda:N or mps
    dtype: str  # resolved: float32, float16 or bfloat16
    memory: MemoryEstimate
    offline: bool = False  # some weights come from the hub cache and the hub is unreachable: load them offline
    providers: dict[str, dict[str, str]] = field(default_factory=dict)  # by role: the distribution and version of its spec
    loras: dict[str, list] = field(default_factory=dict)  # by role: the LoraRequests (vsynth.core.diffusion.lora), located and checked
    metrics: list = field(default_factory=list)  # the MetricSpecs measured after the run (--metrics, else the default set)
    worlds: list = field(default_factory=list)  # the WorldSpecs asked for the source video's ground truth
    caches: dict = field(default_factory=dict)  # by role: the step cache it runs with (caches.CacheChoice)

    @property
    def fps(self) -> float:
        """Output frame rate: the source's divided by the stride, else a default."""
        if self.video is None or not self.video.fps:
            return (self.vdm and self.vdm.fps) or DEFAULT_FPS
        return self.video.fps / self.config.stride

    @property
    def specs(self) -> dict[str, ModelSpec]:
        """The models the run loads, by role: "idm" (when there is one), "vdm" (unless the bridge uses none)."""
        return by_role(self.idm, self.vdm)

    @property
    def task(self) -> str | None:
        """The bridge's task if it defines one, else the IDM's; inpainting with --outpaint is outpainting."""
        if self.bridge.task == "text-to-video" and self.vdm is not None:  # a VDM alone that takes the inputs (VACE, TI2V, LTX)
            config, vdm_params = self.config, self.params.get("vdm")
            if config.mask is not None or config.outpaint is not None:
                return "outpainting" if config.outpaint is not None else "inpainting"
            if getattr(vdm_params, "first_frame", "none") == "source":
                return "image-to-video"
            if config.condition_video is not None or (config.video is not None and hasattr(vdm_params, "control")):
                return "controllable-generation"
        if self.bridge.task or self.idm is None:
            return self.bridge.task
        return "outpainting" if self.idm.task == "inpainting" and self.config.outpaint else self.idm.task


@dataclass
class RunReport:
    out_dir: Path | None  # None when the run was not written
    record: dict = field(default_factory=dict)  # what run.json holds
    frames: object = None  # uint8 (F, H, W, 3): the final video
    latents: object = None  # torch (1, C, F, h, w): the final latent video, before decoding
    loaded: LoadedModels | None = None  # the models it ran on, for the next run with the same model set


@dataclass
class LoadedModels:
    """Models loaded for a plan, ready to run, reusable by any plan with the same ``key`` (see :func:`model_key`)."""

    key: tuple
    runtime: object  # the Runtime they live on
    models: dict  # by role: "idm" (when there is one), "vdm"
    offload: object = None  # the ModelOffload, SequentialOffload or GroupOffload hooking them, with --offload
    accel: dict = field(default_factory=dict)  # by role: LoRAs, quantization, compilation applied (run.json's "accel")


def by_role(idm: ModelSpec | None, vdm: ModelSpec | None) -> dict[str, ModelSpec]:
    """The run's models by role, those it has: "idm" and "vdm" (a bridge may use only one of them)."""
    return {role: spec for role, spec in (("idm", idm), ("vdm", vdm)) if spec is not None}


def default_stride(toy) -> int:
    """The source stride of a run that names none: the toy world's (its weights learnt motion frame by frame), else BIVDiff's."""
    return toy.stride if toy is not None and toy.stride else BIVDIFF_STRIDE


def _size(config: RunConfig, default: tuple[int, int]) -> tuple[int, int]:
    """(height, width): the default size's unless given; one side given alone keeps the default's aspect (--width 416
    on Wan's 480x832 is 240x416, not 480x416; --height 256 with an IDM's 512x512 is 256x256)."""
    height, width = config.height, config.width
    if height is None and width is not None:
        height = max(1, round(width * default[0] / default[1]))
    elif width is None and height is not None:
        width = max(1, round(height * default[1] / default[0]))
    return height or default[0], width or default[1]


def plan_run(config: RunConfig, registry: Registry | None = None) -> RunPlan:
    """Validate a run before any weights load; raises a typed one-line error (vsynth.errors).

    Cheap checks come first; then the source frames are read (every frame the run needs), the
    selected implementations imported and the weights located.
    """
    registry = registry or get_registry()
    idm = registry.model(config.idm, "idm") if config.idm else None
    named_vdm = registry.model(config.vdm, "vdm") if config.vdm else None
    bridge = registry.bridge(chosen_bridge(config.bridge, config.idm))
    vdm = _video_model(named_vdm, bridge)
    _check_inputs(config, idm, vdm, bridge)
    config, idm_preset = _with_lora_presets(config, idm, vdm)
    metrics = measure.choose(registry, config.metrics)
    toy = registry.world("toy") if config.toy else None
    if toy is not None:
        _check_toy(config, [s for s in (idm, vdm) if s is not None], toy.load_impl()())
    if config.stride is None:
        config = config.model_copy(update={"stride": default_stride(toy)})

    models = by_role(idm, vdm)
    weight_keys = {role: weights_options(spec) for role, spec in models.items()}
    caches, model_options, cache_notices = step_caches.plan(config.cache, config.idm_cache, config.vdm_cache if vdm else None, models, config.options)
    for notice in cache_notices:
        warnings.warn(notice, VsynthWarning, stacklevel=2)
    unused = {"vdm": named_vdm} if vdm is None and named_vdm is not None else {}  # its options route to it, and are dropped
    routed = route_options(model_options, {**{r: s.params for r, s in {**models, **unused}.items()}, "bridge": bridge.params},
                           {**weight_keys, **{r: weights_options(s) for r, s in unused.items()}})  # fmt: skip
    if vdm is None:
        _warn_unused_vdm(config, named_vdm, bridge, routed.pop("vdm", {}))
    overrides = {role: {key: routed[role].pop(key) for key in weight_keys[role] if key in routed[role]} for role in models}
    params = {role: validate_params(spec.params, routed[role], role, config.options) for role, spec in models.items()}
    bridge_defaults = idm.bridge_defaults.get(bridge.name, {}) if idm else {}
    odd = sorted(set(bridge_defaults) - set(bridge.params.model_fields))
    if odd:  # the IDM's spec asks its bridge for a param it has not: the user typed none of it
        raise InvalidParamsError(f"{idm.name} ({'plugin ' + idm.plugin if idm.plugin != BUILTIN else 'built-in'}) sets bridge_defaults "
                                 f"{bridge.name}.{odd[0]}, which bridge '{bridge.name}' has no param of: report it to its authors, or "
                                 "choose another --bridge")  # fmt: skip
    params["bridge"] = validate_params(bridge.params, {**bridge_defaults, **routed["bridge"]}, "bridge", config.options)
    sampling = _resolve_sampling(config, params.get("vdm"), idm, not_shared=idm_preset)
    validate.check_steps({role: (getattr(sampling, STEPS[role]), _steps_flag(config, role)) for role in ("idm", "vdm")}, models)
    if idm is not None:
        solvers.check(config.idm_scheduler, idm, "--idm-scheduler", sampling.steps)
    elif config.idm_scheduler is not None:
        raise VsynthInputError("--idm-scheduler is the image model's solver, and this run has none: drop it, or add --idm")
    if vdm is not None:
        solvers.check(config.vdm_scheduler, vdm, "--vdm-scheduler", sampling.vdm_steps)
    params = {role: p.for_models(idm, vdm, set(routed[role])) for role, p in params.items()}
    inputs = {name for name in ("video", "condition_video", "mask") if getattr(config, name) is not None}
    inputs |= {"mask"} if config.outpaint is not None else set()
    for role, role_params in params.items():
        role_params.check_plan(sampling)
        role_params.check_models(idm, vdm)
        role_params.check_inputs(inputs, idm, bridge, set(routed[role]))

    if vdm is not None:
        _check_window(config, vdm, params["vdm"])
        if not bridge.video_noise and getattr(params["vdm"], "noise", "independent") != "independent":
            warnings.warn(f"-o noise={params['vdm'].noise} is not used: bridge '{bridge.name}' starts the VDM from an inversion, "
                          "not from drawn noise", VsynthWarning, stacklevel=2)  # fmt: skip
    validate.check_device(config.device)
    device = validate.resolve_device(config.device)
    dtype = validate.resolve_dtype(config.dtype, device)
    validate.check_precision(dtype, config.offload, device)
    quantize.check(config.quantize, device)
    if config.quantize == "nf4" and config.offload in ("sequential", "group"):
        raise VsynthInputError(f"--quantize nf4 with --offload {config.offload}: bitsandbytes' 4-bit layers move whole; use --offload model")
    validate.warn_compile(config.compile, device)
    infos = [_probe(config, getattr(config, name)) for name in ("video", "condition_video", "mask")
             if getattr(config, name) and not (name == "mask" and is_still(config.mask))]  # one image masks every frame
    info = infos[0] if infos else None
    if config.video is not None:
        measure.check_ground_truth(registry, config.video, info)  # a stale sidecar would fail the metrics after the whole run
    default_size = toy.size if toy is not None and toy.size else BIVDIFF_SIZE if idm else (vdm.native_size or BIVDIFF_SIZE)
    size = _size(config, default_size)
    if toy is not None and toy.size and size != tuple(toy.size):
        warnings.warn(f"--toy at {size[0]}x{size[1]}: the toy models learnt at {toy.size[0]}x{toy.size[1]}, and at another "
                      "size their pictures, and the metrics on them, mean little", VsynthWarning, stacklevel=2)  # fmt: skip
    frames, height, width, notices = validate.fit_to_latents(config.frames, *size, models, config.fit)
    for notice in notices:
        warnings.warn(notice, VsynthWarning, stacklevel=2)
    config = config.model_copy(update={"frames": frames})
    out_dir = choose_out_dir(config.out, "-".join(s.name for s in models.values()))
    validate.check_out(out_dir, given=config.out is not None)
    frames = _read_sources(config, height, width)

    validate.check_impls([*models.values(), bridge, *metrics])
    sources = {}
    for role, spec in models.items():
        options = {**params[role].model_dump(), **overrides[role]}
        primary, single = getattr(config, f"{role}_weights"), None
        if gguf.is_gguf(primary):  # the transformer from the file; the rest of the pipeline from the model's own weights
            experts = 2 if any(f.startswith("transformer_2/") for f in spec.weights[0].files) else 1
            single, primary = gguf.check(spec, spec.load_impl(), primary, f"--{role}-weights", experts), None
        wanted = resolve_sources(spec, primary, options, config.tiny, toy and toy.load_impl()())
        flags = weight_flags(spec)
        used = [w for w in spec.weights if (bridge.image_inversion or not w.inversion_only) and w.used_with(options)]
        if single is not None:
            used = [w.model_copy(update={"files": tuple(f for f in w.files if not f.startswith("transformer"))}) if w is spec.weights[0] else w
                    for w in used]  # fmt: skip
        sources[role] = {w.role: locate(w, wanted[w.role], flags[w.role], options) for w in used}
        if single is not None:
            sources[role]["gguf"] = str(single.resolve())
    if not config.trust_pickles:
        refuse_pickles(models, sources, params)
    loras = {role: [lora.resolve(spec, text, f"--{role}-lora") for text in getattr(config, f"{role}_lora")] for role, spec in models.items()}
    for role, requests in loras.items():
        for request in requests:
            lora.check_plan(models[role], request, sources[role])  # headers only: before any weights load
    offline = needs_hub(sources) and not hub_reachable()
    guidance = {"idm": sampling.guidance, "vdm": sampling.vdm_guidance}

    def plan_memory(vae_batch=None):
        return estimate_memory(models, sources, params, frames=config.frames, height=height, width=width, guidance=guidance,
                               dtype=dtype, device=device, offload=config.offload, vae_batch=vae_batch,
                               quantize=config.quantize)  # fmt: skip

    metric_sample = measure.Sample(tiny=config.tiny)
    for spec in metrics:  # their weights are located now, so that a missing CLIP fails before the run, not after it
        measure.metric_weights(spec, metric_sample)
    memory = plan_memory()
    if config.memory_check:
        memory = fit_vae_batch(plan_memory, memory)
        levers = tuple(name for name in ("batch_size", "window") if any(name in type(p).model_fields for p in params.values()))
        check_fits(memory, levers)  # the params of this run's models that lower the peak
    providers = {role: registry.provider(spec) for role, spec in {**models, "bridge": bridge}.items()}
    providers.update({f"metric.{spec.name}": registry.provider(spec) for spec in metrics})
    return RunPlan(config, idm, vdm, bridge, params, sources, sampling, info, height, width, out_dir, frames, device, dtype, memory, offline, providers,
                   loras, metrics, list(registry.worlds.values()), caches)  # fmt: skip


def _with_lora_presets(config: RunConfig, idm: ModelSpec | None, vdm: ModelSpec | None) -> tuple[RunConfig, set[str]]:
    """A LoRA preset distilled for few steps (``vsynth models NAME`` lists them) sets its model's solver, steps and
    guidance, each unless the user gave it; a notice says what it set. ``--idm-lora`` needs an IDM.

    Also returns the shared settings (``steps``, ``guidance``) that an IDM's preset set: they are the IDM's alone,
    and the VDM keeps its own (an LCM LoRA on the IDM does not run ZeroScope at 4 steps without guidance)."""
    if config.idm_lora and idm is None:
        raise VsynthInputError("--idm-lora is a LoRA of the image model, and this run has none: drop it, or add --idm")
    if config.fuse_lora and not (config.idm_lora or config.vdm_lora):
        raise VsynthInputError("--fuse-lora fuses the run's LoRAs, and it has none: add --idm-lora or --vdm-lora, or drop --fuse-lora")
    update: dict = {}
    idm_preset: set[str] = set()
    for role, spec in (("idm", idm), ("vdm", vdm)):
        for text in getattr(config, f"{role}_lora") if spec is not None else ():
            preset = next((p for p in spec.loras if p.name == lora.parse(text.strip(), f"--{role}-lora")[0]), None)
            if preset is None:
                continue
            own = ("steps", "guidance") if role == "idm" or idm is None else ("vdm_steps", "vdm_guidance")
            given = {"steps": ("steps", "vdm_steps") if role == "vdm" and idm is None else (own[0],),
                     "guidance": ("guidance", "vdm_guidance") if role == "vdm" and idm is None else (own[1],)}  # fmt: skip
            wanted = {f"{role}_scheduler": (preset.solver, (f"{role}_scheduler",)), own[0]: (preset.steps, given["steps"]),
                      own[1]: (preset.guidance, given["guidance"])}  # fmt: skip
            chosen = {}
            for field_name, (value, flags) in wanted.items():
                if value is not None and field_name not in update and all(getattr(config, f) is None for f in flags):
                    update[field_name] = chosen[field_name] = value
            if chosen:
                said = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
                if role == "idm" and vdm is not None:
                    idm_preset |= set(chosen) & {"steps", "guidance"}
                    said += " (the image model's; the video model keeps its own)" if idm_preset else ""
                warnings.warn(f"--{role}-lora {preset.name}: sampling as it was distilled: {said}", VsynthWarning, stacklevel=3)
    return (config.model_copy(update=update) if update else config), idm_preset


INPUT_FLAGS = {
    "video": "--video",
    "condition_video": "--condition-video",
    "mask": "--mask",
    "outpaint": "--outpaint",
    "source_prompt": "--source-prompt",
}


VDM_SETTINGS = ("vdm_steps", "vdm_guidance", "vdm_scheduler", "vdm_weights", "vdm_lora", "vdm_cache")


def _video_model(named: ModelSpec | None, bridge: BridgeSpec) -> ModelSpec | None:
    """The run's video model: the one named, which the bridge needs, or None for a bridge that uses none (idm-only)."""
    if not bridge.needs_vdm:
        return None
    if named is None:
        raise VsynthInputError(f"missing --vdm (`vdm:` in a config or jobs file): bridge '{bridge.name}' needs a video model "
                               "(see `vsynth models --kind vdm`)")  # fmt: skip
    return named


def _warn_unused_vdm(config: RunConfig, named: ModelSpec | None, bridge: BridgeSpec, options: dict) -> None:
    """A bridge that uses no video model still takes one named, with its settings and -o options (a script that compares
    bridges on one command line), and says in one line that they are not used."""
    given = [f"--vdm {named.name}"] if named is not None else []
    given += [f"--{name.replace('_', '-')}" for name in VDM_SETTINGS if getattr(config, name) not in (None, [])]
    given += [f"-o {key}" for key in options]
    if given:
        warnings.warn(f"bridge '{bridge.name}' uses no video model: {', '.join(given)} not used (no VDM is loaded)", VsynthWarning, stacklevel=3)


def _check_inputs(config: RunConfig, idm: ModelSpec | None, vdm: ModelSpec | None, bridge: BridgeSpec) -> None:
    """The bridge and the IDM (its task) get the inputs they need, and no input goes unused."""
    if bridge.needs_idm and idm is None:
        raise VsynthInputError(f"bridge '{bridge.name}' needs an image model: add --idm (see `vsynth models --kind idm`)")
    if not bridge.needs_idm and not bridge.accepts_idm and idm is not None:
        raise VsynthInputError(f"bridge '{bridge.name}' runs the video model alone: drop --idm, or choose another --bridge")
    if bridge.video == "required" and config.video is None:
        raise VsynthInputError(f"missing --video: bridge '{bridge.name}' works on a source video")
    for need in bridge.needs:
        if all(getattr(config, choice) is None for choice in need.split("|")):
            raise VsynthInputError(f"bridge '{bridge.name}' needs {' or '.join(INPUT_FLAGS[c] for c in need.split('|'))}")
    needs = idm.needs if idm else ()
    for need in needs:
        choices = need.split("|")
        if all(getattr(config, choice) is None for choice in choices):
            flags = " or ".join(INPUT_FLAGS[c] for c in choices)
            raise VsynthInputError(f"{idm.name} ({idm.task}) needs {flags}")
    vdm_accepts = set(vdm.accepts) if vdm else set()
    used = {c for need in (*needs, *bridge.needs) for c in need.split("|")} | set(idm.accepts if idm else ()) | vdm_accepts
    used |= {"video"} if bridge.video == "required" else set()
    if bridge.video == "unused" and "video" not in vdm_accepts:
        used.discard("video")
    for name, flag in INPUT_FLAGS.items():
        if getattr(config, name) is not None and name not in used:
            user = f"{idm.name} with bridge '{bridge.name}'" if idm else f"bridge '{bridge.name}'"
            raise VsynthInputError(f"{flag} is not used by {user}: drop it, or choose a model that uses it")
    if config.stride is not None and all(getattr(config, name) is None for name in ("video", "condition_video", "mask")):
        warnings.warn(f"--stride {config.stride} is not used: this run reads no source video", VsynthWarning, stacklevel=3)
    if idm is None and config.idm_prompt is not None:
        raise VsynthInputError("--idm-prompt is the image model's prompt, and this run has none: drop it, or add --idm")
    if config.mask is not None and config.outpaint is not None:
        raise VsynthInputError("give --mask (inpainting) or --outpaint (outpainting), not both")


def _check_toy(config: RunConfig, specs: list[ModelSpec], world) -> None:
    """--toy needs models with toy weights; a prompt with words the toy models never saw gets a warning."""
    if config.tiny:
        raise VsynthInputError("--tiny and --toy both choose the weights: give one of them")
    for spec in specs:
        if any(w.toy is None for w in spec.weights):
            raise VsynthInputError(f"{spec.name} has no toy weights: `vsynth models` marks the models that have them")
    for label, prompt in (("--prompt", config.prompt), ("--idm-prompt", config.idm_prompt)):
        unknown = world.unknown_words(prompt or "")
        if unknown:
            warnings.warn(
                f"{label}: the toy models do not know {', '.join(repr(w) for w in unknown)}; they follow only the toy "
                "vocabulary (see `vsynth models`)",
                VsynthWarning,
                stacklevel=3,
            )


def _check_window(config: RunConfig, vdm: ModelSpec, params: Params) -> None:
    """Clips of any length go in windows; a window (or, without one, the clip) must fit the VDM's ``max_frames``."""
    window = getattr(params, "window", None)
    if vdm.max_frames is None or (window or config.frames) <= vdm.max_frames:
        return
    if window is None:
        windows = " or denoise it in windows (-o window)" if "window" in type(params).model_fields else ""
        raise VsynthInputError(f"{vdm.name} denoises at most {vdm.max_frames} frames at once (its frame window); lower --frames{windows}")
    raise VsynthInputError(f"{vdm.name} denoises at most {vdm.max_frames} frames at once: lower -o window={window} to {vdm.max_frames} or less")


def _resolve_sampling(config: RunConfig, vdm_params: Params | None, idm: ModelSpec | None, not_shared: set[str] = frozenset()) -> Sampling:
    """Without an IDM, --steps/--guidance are the VDM's own; with one, they are shared unless the VDM fixes its own
    (or an IDM's LoRA preset set them: ``not_shared``). Left out, the IDM's are its spec's defaults (FLUX's as its
    pipelines), else 50 and 7.5."""
    has_idm = idm is not None
    steps = config.vdm_steps if config.vdm_steps is not None or has_idm else config.steps
    guidance = config.vdm_guidance if config.vdm_guidance is not None or has_idm else config.guidance
    resolver = vdm_params if isinstance(vdm_params, VideoParams) else VideoParams()
    shared_steps = None if "steps" in not_shared else config.steps
    shared_guidance = None if "guidance" in not_shared else config.guidance
    vdm_steps, vdm_guidance = resolver.sampling(steps, guidance, shared_steps=shared_steps, shared_guidance=shared_guidance)
    return Sampling(
        steps=config.steps or (idm and idm.default_steps) or DEFAULT_STEPS,
        guidance=config.guidance if config.guidance is not None else _default_guidance(idm),
        vdm_steps=vdm_steps,
        vdm_guidance=vdm_guidance,
    )


STEPS = {"idm": "steps", "vdm": "vdm_steps"}  # each model's steps in Sampling


def _steps_flag(config: RunConfig, role: str) -> str:
    """The flag that set a model's steps, as the user typed it: --vdm-steps where given, else the shared --steps."""
    return "--vdm-steps" if role == "vdm" and config.vdm_steps is not None else "--steps"


def _default_guidance(idm: ModelSpec | None) -> float:
    return idm.default_guidance if idm is not None and idm.default_guidance is not None else DEFAULT_GUIDANCE


def _probe(config: RunConfig, path: Path) -> videoio.VideoInfo:
    info = videoio.probe_video(path)
    needed = (config.frames - 1) * config.stride + 1
    if info.num_frames < needed:
        available = (info.num_frames - 1) // config.stride + 1
        # maps or a mask made from the sampled source have its frames already: the stride applies to them too
        beside = f" (--stride reads {'the mask' if path == config.mask else 'the control maps'} as it reads the source)" if path != config.video else ""
        raise VideoError(
            f"{path} has {info.num_frames} frames; at stride {config.stride} that gives {available}, "
            f"fewer than the {config.frames} requested: lower --frames or --stride{beside}"
        )
    return info


def _read_sources(config: RunConfig, height: int, width: int):
    """Every input video at the run's size and frames; outpainting masks drawn at that size."""
    from vsynth.core.media.masks import outpaint_mask, parse_outpaint, read_mask
    from vsynth.core.diffusion.inputs import Sources

    def read(path):
        return videoio.read_video(path, frames=config.frames, stride=config.stride, size=(height, width)).frames

    mask = None
    if config.mask is not None:
        mask = read_mask(config.mask, frames=config.frames, stride=config.stride, size=(height, width))
    elif config.outpaint is not None:
        mask = outpaint_mask(parse_outpaint(config.outpaint), config.frames, height, width)
    return Sources(
        video=read(config.video) if config.video else None,
        condition=read(config.condition_video) if config.condition_video else None,
        mask=mask,
        source_prompt=config.source_prompt,
    )


def _runtime(plan: RunPlan):
    import torch

    from vsynth.core.diffusion.inputs import Runtime

    return Runtime(device=torch.device(plan.device), dtype=getattr(torch, plan.dtype), offload=plan.config.offload)


def model_key(plan: RunPlan) -> tuple:
    """What the loaded models of a plan depend on: names, params, weights, device, dtype, offload and
    compilation; equal keys share models."""
    specs = plan.specs
    return (plan.device, plan.dtype, plan.config.offload, plan.config.compile, plan.config.quantize, plan.config.fuse_lora) + tuple(
        (role, spec.qualified_name, plan.params[role].model_dump_json(), tuple(sorted(plan.sources[role].items())),
         getattr(plan.config, f"{role}_scheduler"), tuple((r.path, r.scale) for r in plan.loras.get(role, ())))
        for role, spec in specs.items()
    )  # fmt: skip


def load_models(plan: RunPlan, stages: Stages) -> LoadedModels:
    """Load the plan's IDM (if any) and VDM, checked, placed (offloaded, compiled) and windowed: the slow
    part of a run, done once for many runs by a Session."""
    from vsynth.core.diffusion.components import placement
    from vsynth.core.diffusion.offload import apply_offload
    from vsynth.core.diffusion.windows import windowed

    runtime = _runtime(plan)
    specs = plan.specs
    models = {}
    accel: dict[str, dict] = {}  # by role: the LoRAs, quantization and compilation applied, for run.json
    with stages.stage("loading models", total=len(specs)) as advance, placement((plan.device, plan.config.offload)):
        for role, spec in specs.items():
            with plugin_errors(spec):  # a third-party model's own failure: one line naming it
                models[role] = spec.load_impl().load(spec, plan.params[role], plan.sources[role], runtime)
            _check_weights_finite(role, models[role], plan.sources[role])
            _check_process(spec, models[role].denoiser)
            models[role].codec.space = spec.latent_space
            solver = getattr(plan.config, f"{role}_scheduler")
            if solver is not None:  # the model's main denoiser; an IDM's inversion denoiser keeps its own (DDIM)
                models[role].denoiser.scheduler = solvers.build(solver, models[role].denoiser.scheduler, f"--{role}-scheduler", spec.name)
            if spec.process != "flow":
                steps, flag = getattr(plan.sampling, STEPS[role]), _steps_flag(plan.config, role)
                for d in (models[role].denoiser, getattr(models[role], "inversion_denoiser", None)):
                    if d is not None and hasattr(getattr(d, "scheduler", None), "set_timesteps"):
                        validate.check_schedule_reach(d.scheduler, steps, flag, spec.name)
            advance(1)
        # Once every model is loaded (and holds the tensors it shares with the other: SD1.5's UNet under an SD1.5 IDM
        # and AnimateDiff), so that a fused layer's copy leaves the other model sharing the rest. LoRAs before
        # quantizing: a fused LoRA is quantized with its layer.
        for role, model in models.items():
            if plan.loras.get(role):
                accel[role] = {"loras": lora.apply(model, plan.loras[role], plan.config.fuse_lora)}
            if plan.config.quantize != "none":
                accel.setdefault(role, {})["quantize"] = quantize.apply(model.unets(), plan.config.quantize, runtime.dtype)
    units = {f"{role}.{name}": modules for role, model in models.items() for name, modules in model.offload_units().items()}
    offload = apply_offload(plan.config.offload, runtime.device, units)
    if plan.config.compile:
        for role, model in models.items():
            accel.setdefault(role, {})["compiled"] = [compile_network(unet) for unet in model.unets()]
    if "vdm" in models:
        models["vdm"].denoiser = windowed(models["vdm"].denoiser, plan.params["vdm"])  # the window is a VDM param: part of the key
    return LoadedModels(model_key(plan), runtime, models, offload, accel)


def compile_network(network) -> str:
    """``--compile``: diffusers' regional compilation where the network declares its repeated blocks (a transformer's
    blocks compile once and are reused: seconds instead of minutes), else torch.compile of the whole network; in
    place, so counters, attention processors and offload hooks stay on the same module. What was compiled, for run.json."""
    repeated = getattr(network, "_repeated_blocks", None)
    if repeated and hasattr(network, "compile_repeated_blocks"):
        network.compile_repeated_blocks()
        return f"{type(network).__name__}: repeated blocks ({', '.join(repeated)})"
    network.compile()
    return f"{type(network).__name__}: whole"


def execute(
    plan: RunPlan, display=None, *, library_bars: bool = False, loaded: LoadedModels | None = None, write: bool = True
) -> RunReport:
    """Claim the output folder, then load (unless ``loaded`` models for this plan are given), prepare,
    bridge, decode, write; with ``write`` false, no folder is claimed or written.

    ``display`` is an optional rich Progress; ``library_bars`` lets diffusers and transformers
    show their own per-model loading bars (off: vsynth's stages say the same). The libraries'
    cache-fallback lines are kept out, and an unreachable hub is not asked again.
    """
    with library_progress_bars(library_bars), quiet_library_fallbacks(), hub_offline(plan.offline):
        if not write:
            return _synthesize(plan, display, None, loaded)
        with output_folder(plan.out_dir, exact=plan.config.out is not None) as out:
            report = _synthesize(plan, display, out, loaded)
    report.out_dir = out.final
    return report


def _synthesize(plan: RunPlan, display, out: OutputFolder | None, loaded: LoadedModels | None) -> RunReport:
    """The run itself; run.json and the files are written into ``out.partial`` when there is an ``out``."""
    import torch

    from vsynth.core.diffusion.inputs import BridgeInputs
    from vsynth.core.diffusion.inputs import FrameInputs
    from vsynth.core.diffusion.latents import codec_record
    from vsynth.core.run.evals import EvalCounter

    config, sampling = plan.config, plan.sampling
    stages = Stages(display)
    if loaded is None:
        loaded = load_models(plan, stages)
    elif loaded.key != model_key(plan):
        raise ValueError("the loaded models belong to another model set than this plan's")
    runtime, models = loaded.runtime, loaded.models
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    idm, vdm = models.get("idm"), models.get("vdm")
    for model in models.values():
        tiled = model.codec.set_tiling(plan.height, plan.width)  # the same for every codec: it depends on the size alone
        model.codec.set_batch(plan.memory.vae_batch)
        model.codec.passes = dict.fromkeys(model.codec.passes, 0)
    bridge = plan.bridge.load_impl()(plan.bridge, plan.params["bridge"])
    counter = EvalCounter()
    for role, model in models.items():
        for unet in model.unets():
            counter.attach(unet, role)
        for name, network in model.conditioning_networks().items():
            counter.attach(network, f"{role}.{name}")

    sources = plan.frames
    frame_inputs = FrameInputs()
    if idm is not None:
        with stages.stage("preparing conditions", total=1) as advance:
            with plugin_errors(plan.idm):
                frame_inputs = idm.prepare(sources)
            advance(1)

    inputs = BridgeInputs(
        frames=config.frames,
        height=plan.height,
        width=plan.width,
        steps=sampling.steps,
        guidance=sampling.guidance,
        vdm_steps=sampling.vdm_steps,
        vdm_guidance=sampling.vdm_guidance,
        prompt=config.prompt,
        image_prompt=config.image_prompt,
        negative_prompt=config.negative_prompt,
        sources=sources,
        frame_inputs=frame_inputs,
    )
    for model in models.values():
        with plugin_errors(model.spec):
            model.configure(inputs)
    generator = torch.Generator("cpu").manual_seed(config.seed)
    caches = step_caches.attach(models, plan.caches)  # per run, so that a Session's models run with or without one
    try:
        with compiling(stages, config.compile), plugin_errors(plan.bridge):
            result = bridge.run(idm, vdm, inputs, generator, stages)
    finally:
        step_caches.detach(caches)
    counter.detach()

    with plugin_errors(plan.bridge):
        _check_bridge_result(result)
    if not torch.isfinite(result.latents).all():  # decoded, they would be a black video, and every metric would read it
        raise NonFiniteError(f"bridge '{plan.bridge.name}' returned latents holding NaN or infinite values; the run stopped "
                             "(lower --guidance, or check the weights for NaN values)")  # fmt: skip
    with stages.stage("decoding", total=config.frames) as advance, plugin_errors(plan.bridge):
        frames = result.codec.decode(result.latents, advance)
        if plan.bridge.plugin != BUILTIN and tuple(frames.shape[:3]) != (config.frames, plan.height, plan.width):
            raise ValueError(f"its latents decode to {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}, and the run "
                             f"asked for {config.frames} of {plan.height}x{plan.width}")  # fmt: skip
    if loaded.offload is not None:
        loaded.offload.release()

    videos = {
        "source": sources.video,
        "T2V": result.intermediates.get("t2v_frames"),  # a source the VDM generated first (EVS without --video)
        "condition": frame_inputs.condition_frames if idm is not None else getattr(vdm, "condition_frames", None),  # VACE's own maps
        "IDM": result.intermediates.get("idm_frames"),
        "final": frames,
    }
    record = _record(plan, runtime, counter, models.get("vdm"))
    if result.record:  # what the bridge resolved at run time (flow-edit: its levels and guidance for these models)
        record["bridge"]["resolved"] = result.record
    for role, model in models.items():
        record["models"][role]["sampling"] = sampling_record(model.denoiser)
    record["caches"] = {role: cache.record() for role, cache in caches.items()}
    record["codecs"] = codec_record({role: model.codec for role, model in models.items()})
    record["vae_tiling"] = tiled
    record["accel"] = loaded.accel
    fps = plan.fps
    record["fps"] = fps
    report = RunReport(out_dir=None, record=record, frames=frames, latents=result.latents, loaded=loaded)
    if out is None:
        _measure(plan, videos, idm, record, runtime)
        _close_record(record, stages, runtime)
        return report
    try:
        _write_files(out.partial, videos, fps, result.latents if config.save_latents else None, stages)
        _measure(plan, videos, idm, record, runtime)
        record["files"] = sorted(p.name for p in out.partial.iterdir() if p.name != PARTIAL_MARKER) + ["run.json"]
        _close_record(record, stages, runtime)
        (out.partial / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    except OSError as exc:  # a full disk, a quota, a file system gone read-only
        raise OutputWriteError(
            f"cannot write the output folder {out.final}: {exc.strerror or exc}; nothing was left behind: "
            "free some space or choose another --out"
        ) from None
    return report


def _close_record(record: dict, stages: Stages, runtime) -> None:
    """What run.json says last: seconds per stage and peak memory, known once everything else is done."""
    record["timings"] = dict(stages.timings)
    record["peak_memory_mb"], record["peak_memory_source"] = _peak_memory(runtime.device)


def _check_process(spec: ModelSpec, denoiser) -> None:
    """The process a spec declares (what validation checked solvers against) is the one its denoiser runs."""
    from vsynth.errors import PluginError

    if denoiser.process.name != spec.process:
        raise PluginError(
            f"{spec.name} ({spec.plugin}) declares the {spec.process} process, but its denoiser runs {denoiser.process.name}: "
            "set ModelSpec.process, or the denoiser's declared_process, to what the model predicts"
        )


def _check_weights_finite(role: str, model, sources: dict[str, str]) -> None:
    """NaN or inf in the UNets or the VAE would make every step non-finite: say which weights, once, at load."""
    import torch

    for module in [*model.unets(), model.codec.vae]:
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"the {role} weights hold NaN or infinite values ({type(module).__name__}.{name}; "
                    f"loaded from {', '.join(sources.values())}): the checkpoint is damaged, re-download or re-export it"
                )


def _write_files(folder: Path, videos: dict, fps: float, latents, stages: Stages) -> None:
    """video.mp4/.gif, t2v_frames.mp4, idm_frames.mp4 and condition.mp4 where there are such frames, grid.png, latents."""
    named = {"t2v_frames.mp4": videos["T2V"], "idm_frames.mp4": videos["IDM"], "condition.mp4": videos["condition"]}
    todo = 3 + sum(v is not None for v in named.values()) + (latents is not None)
    with stages.stage("writing", total=todo) as advance:
        videoio.write_mp4(folder / "video.mp4", videos["final"], fps)
        videoio.write_gif(folder / "video.gif", videos["final"], fps, max_frames=GIF_MAX_FRAMES)
        advance(2)
        for name, frames in named.items():
            if frames is not None:
                videoio.write_mp4(folder / name, frames, fps)
                advance(1)
        videoio.make_grid([(label, f) for label, f in videos.items() if f is not None]).save(folder / "grid.png")
        advance(1)
        if latents is not None:
            from safetensors.torch import save_file

            save_file({"latents": latents.float().cpu().contiguous()}, str(folder / "latents.safetensors"))
            advance(1)


def _check_bridge_result(result) -> None:
    """What a bridge returns is a BridgeResult holding one latent video (1, C, F, h, w) and its codec: a third-party
    bridge's mistake is then one line naming it (:func:`plugin_errors`), not an AttributeError while decoding."""
    import torch

    from vsynth.core.diffusion.bridge import BridgeResult

    if not isinstance(result, BridgeResult):
        raise TypeError(f"run() returned {type(result).__name__}, not a BridgeResult(latents=..., codec=...)")
    latents = result.latents
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[0] != 1:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"BridgeResult.latents is {shape}; it must be one latent video, (1, channels, frames, height, width)")


def _vdm_latent_frames(plan: RunPlan, vdm) -> int:
    """The video model's latent frames, by its loaded VAE's compression (the toy Wan's keeps every frame), which
    may differ from its spec's latent space (the real Wan's 4-frame steps)."""
    space = plan.vdm.latent_space
    temporal = getattr(getattr(vdm, "codec", None), "temporal", None)
    if temporal and temporal != space.temporal:
        space = space.model_copy(update={"temporal": temporal})
    return space.latent_frames(plan.config.frames)


def _record(plan: RunPlan, runtime, counter, vdm=None) -> dict:
    """Everything run.json says about the run, except what is known only after writing; ``vdm`` is the loaded video model."""
    from vsynth.core.diffusion.windows import window_spans

    config = plan.config
    specs = plan.specs
    return {
        "vsynth": __version__,
        "task": plan.task,
        "config": json.loads(config.model_dump_json()),
        # the input files as typed in config, and here absolute: vsynth eval finds them from any folder
        "input_paths": {name: str(Path(path).absolute()) for name in ("video", "condition_video", "mask")
                        if (path := getattr(config, name)) is not None},  # fmt: skip
        "models": {
            role: {"name": spec.name, "plugin": spec.plugin, **plan.providers.get(role, {}), "params": plan.params[role].model_dump(), "weights": plan.sources[role]}
            for role, spec in specs.items()
        },
        "bridge": {"name": plan.bridge.name, "plugin": plan.bridge.plugin, **plan.providers.get("bridge", {}), "params": plan.params["bridge"].model_dump()},
        "sampling": {key: value for key, value in vars(plan.sampling).items()  # of the models that run: steps and
                     if (plan.vdm if key.startswith("vdm_") else plan.idm) is not None},  # guidance are the IDM's  # fmt: skip
        "seed": config.seed,
        "frames": config.frames,
        "height": plan.height,
        "width": plan.width,
        "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "offload": runtime.offload,
        "compile": config.compile,
        "memory": plan.memory.record(),
        "nfe": dict(counter.calls),
        "frame_evals": dict(counter.frame_evals),
        # the VDM's [start, stop) windows, in latent frames (frames, unless its VAE compresses time)
        "windows": window_spans(plan.params["vdm"], _vdm_latent_frames(plan, vdm)) if plan.vdm else None,
        "versions": _versions(),
    }


def sampling_record(denoiser) -> dict:
    """run.json's account of how a model sampled: its process, prediction type, scheduler class and config."""
    from vsynth.core.diffusion.processes import scheduler_record

    return scheduler_record(denoiser.process, denoiser.scheduler)


def _measure(plan: RunPlan, videos: dict, idm, record: dict, runtime) -> None:
    """The run's metrics (``plan.metrics``), through the metric hook, into run.json: ``metrics`` holds
    ``{metric: {video: value}}``, ``metric_plugins`` who provides each metric, and why any measured nothing."""
    config = plan.config
    size = (plan.height, plan.width)
    detector = None
    if idm is not None and getattr(idm, "control_maps", None) is not None:  # a control family: its own detector re-detects
        detector = {"kind": getattr(idm, "kind", ""), "maps": idm.control_maps, **plan.params["idm"].model_dump()}
    elif idm is None and videos["condition"] is not None and plan.frames.mask is None and getattr(plan.params.get("vdm"), "control", None):
        # VACE following its control maps (not a fill, whose condition.mp4 is the masked source): edge F1 on canny
        detector = {"kind": plan.params["vdm"].control, **plan.params["vdm"].model_dump()}
    sample = measure.Sample(
        prompt=config.prompt,
        source_prompt=config.source_prompt,
        source=videos["source"],
        condition=videos["condition"],
        detector=detector,
        truth=measure.ground_truth(plan.worlds, config.video, frames=config.frames, stride=config.stride, size=size),
        device=str(runtime.device),
        tiny=config.tiny,
    )
    named = {name.lower(): frames for name, frames in videos.items() if name != "condition"}
    result = measure.measure(plan.metrics, named, sample, keep_going=True)  # the video is made: a metric's failure is recorded
    for name, error in result.failed.items():
        warnings.warn(f"metric {name} failed, the run's files are kept: {error}", VsynthWarning, stacklevel=2)
    record["metrics"] = result.values
    record["metric_plugins"] = {
        spec.name: {
            "plugin": spec.plugin,
            **plan.providers.get(f"metric.{spec.name}", {}),
            **({"skipped": result.skipped[spec.name]} if spec.name in result.skipped else {}),
            **({"note": result.notes[spec.name]} if spec.name in result.notes else {}),
            **({"error": result.failed[spec.name]} if spec.name in result.failed else {}),
        }
        for spec in plan.metrics
    }


def run(config: RunConfig, display=None, registry: Registry | None = None) -> RunReport:
    """Plan and execute one run."""
    return execute(plan_run(config, registry), display)


def _peak_memory(device) -> tuple[float, str]:
    """Peak memory in MiB, and what it measures: CUDA allocations on a GPU, the process's peak RSS on a CPU."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1), "cuda_max_allocated"
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "process_max_rss"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "pluggy", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions

"""Step caches: a network reuses what it computed at earlier steps of one sampling sequence.

For transformers (Wan, FLUX) these are diffusers' own cache hooks (``diffusers.hooks``): First Block
Cache, TaylorSeer, MagCache, Pyramid Attention Broadcast and FasterCache. For UNets (SD1.5, SDXL,
ZeroScope, AnimateDiff) diffusers 0.42 has none; vsynth runs DeepCache's method (Ma et al., CVPR
2024: at all but every ``interval``-th step only the outermost down and up blocks run, the deeper
ones return their output of the last full step) and token merging (tomesd, where installed).

Why vsynth wraps them instead of calling ``enable_cache`` alone: a diffusers pipeline runs one
sequence of steps with one call per step (classifier-free guidance batched, or inside
``cache_context("cond")``). vsynth's bridges leave and re-enter schedules, invert, run windows,
chunk frame batches and call the conditional and unconditional passes apart. So:

- every network call is given a cache context by its position within its step (``call0``,
  ``call1``, ...: the conditional pass, the unconditional one, each window, each batch chunk),
  a step being the calls at one timestep; each context keeps its own state, so the
  unconditional pass never reuses the conditional one's features, nor one window another's;
- :func:`reset` drops every state; :mod:`~vsynth.core.diffusion.sampling` calls it wherever a
  sequence of steps begins (sampling, denoising from any step, inversion): a cache never carries
  features across a seam of a bridge (inversion, re-entry at another level, a new window or batch
  run, the next stage).

run.json counts each model's forwards as full or cached: a forward is cached when some of its
layers returned reused values instead of running (counted on its Linear and convolution layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vsynth.core.host.param_errors import describe
from vsynth.core.host.specs import refuse_bool_number
from vsynth.errors import InvalidParamsError, UnknownNameError, VsynthInputError

if TYPE_CHECKING:
    import torch

Architecture = Literal["unet", "transformer"]
TAYLORSEER_MODULES = r"(blocks|transformer_blocks|single_transformer_blocks)\.\d+\.(attn\d?|ffn|ff|ff_context)"
_TAG = "_vsynth_step_cache"  # the attribute on a hooked network that leads to its role's StepCache


class CacheParams(BaseModel):
    """A cache's parameters, set with ``-o cache.KEY=VALUE`` (both models) or ``-o idm.cache.KEY=...`` / ``vdm.cache.KEY=...``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a NaN threshold read as "greater than 0"

    _no_bool_for_a_number = field_validator("*", mode="before")(classmethod(lambda cls, v, info: refuse_bool_number(cls, v, info)))


class FirstBlockParams(CacheParams):
    threshold: float = Field(0.05, gt=0, description="Skip the other blocks while the first block's residual changed by less than this (relative L1).")


class TaylorSeerParams(CacheParams):
    interval: int = Field(5, ge=1, description="Compute every interval-th step after the warmup; predict the others by Taylor expansion.")
    warmup: int = Field(3, ge=0, description="Steps computed in full at the start of every sequence.")
    order: int = Field(1, ge=0, le=4, description="Order of the Taylor expansion of each block's output.")


class MagCacheParams(CacheParams):
    threshold: float = Field(0.06, gt=0, description="Skip while the accumulated magnitude-ratio error stays below this.")
    max_skip: int = Field(3, ge=1, description="At most this many consecutive skipped steps.")
    retention: float = Field(0.2, ge=0, le=1, description="Fraction of each sequence's first steps never skipped.")


def _above_low(high: int, info) -> int:
    """A timestep range low < t < high that holds some step."""
    low = info.data.get("low")
    if low is not None and high <= low:
        raise ValueError(f"must be above low ({low}): the range low < t < high would hold no step")
    return high


class PabParams(CacheParams):
    skip: int = Field(2, ge=1, description="Self-attention is computed every skip-th step inside the timestep range, broadcast between.")
    cross_skip: int = Field(0, ge=0, description="The same for cross-attention; 0: always computed.")
    low: int = Field(100, description="Timestep range (0-1000, exclusive) where attention may be reused.")
    high: int = Field(800)

    _high_above_low = field_validator("high")(_above_low)


class FasterCacheParams(CacheParams):
    skip: int = Field(2, ge=1, description="Spatial attention is computed every skip-th step in the range, extrapolated between.")
    low: int = Field(-1, description="Timestep range (0-1000, exclusive) where attention may be extrapolated.")
    high: int = Field(681)
    weight: float = Field(0.5, ge=0, description="Weight of the extrapolation: out_t + weight * (out_t - out_t-2).")

    _high_above_low = field_validator("high")(_above_low)


class DeepCacheParams(CacheParams):
    interval: int = Field(3, ge=1, description="Every interval-th step runs the whole UNet; the others reuse its deep features.")
    depth: int = Field(1, ge=1, description="Outermost down/up block pairs run at every step (the shallow branch).")


class ToMeParams(CacheParams):
    ratio: float = Field(0.5, gt=0, lt=1, description="Fraction of tokens merged in the UNet's self-attention (tomesd).")
    max_downsample: Literal[1, 2, 4, 8] = Field(1, description="Merge in the attention layers down to this downsampling of the latent (1: the full-resolution ones).")


@dataclass(frozen=True)
class CacheKind:
    name: str
    architecture: Architecture
    params: type[CacheParams]


# what each does, and its params: docs/caching.md
CACHES: dict[str, CacheKind] = {
    kind.name: kind
    for kind in (
        CacheKind("first-block", "transformer", FirstBlockParams),  # diffusers' First Block Cache
        CacheKind("taylorseer", "transformer", TaylorSeerParams),  # diffusers' TaylorSeer
        CacheKind("magcache", "transformer", MagCacheParams),  # diffusers' MagCache (FLUX.1's calibration ships)
        CacheKind("pab", "transformer", PabParams),  # diffusers' Pyramid Attention Broadcast
        CacheKind("fastercache", "transformer", FasterCacheParams),  # diffusers' FasterCache
        CacheKind("deepcache", "unet", DeepCacheParams),  # DeepCache's method (:class:`_DeepCache`)
        CacheKind("tome", "unet", ToMeParams),  # token merging, tomesd
    )
}


@dataclass(frozen=True)
class CacheChoice:
    """The cache a model runs with: its name and validated params."""

    name: str
    params: CacheParams

    def record(self) -> dict:
        return {"name": self.name, "params": self.params.model_dump()}


def plan(
    cache: str | None, idm_cache: str | None, vdm_cache: str | None, specs: dict, options: dict[str, Any]
) -> tuple[dict[str, CacheChoice], dict[str, Any], list[str]]:
    """The cache each role runs with, before anything loads: (choices by role, the options left for the models and
    bridge, notices). ``--cache`` applies to every model of the run it fits and is refused if it fits none;
    ``--idm-cache`` / ``--vdm-cache`` (``none`` turns a model's off) apply to their model and are refused if it does not fit.
    ``-o cache.KEY`` sets a param of every cache that has it, ``-o idm.cache.KEY`` / ``vdm.cache.KEY`` of one."""
    wanted: dict[str, tuple[str, str]] = {}  # role -> (name, flag)
    notices = []
    for name, flag in ((cache, "--cache"), (idm_cache, "--idm-cache"), (vdm_cache, "--vdm-cache")):
        if name is not None and name != "none" and name not in CACHES:
            raise UnknownNameError(f"{flag} {name}: unknown cache; known: {', '.join(CACHES)} (or none)")
    if cache not in (None, "none"):
        fitting = [role for role, spec in specs.items() if fits(cache, spec)]
        if not fitting:
            raise VsynthInputError(_refusal("--cache", cache, specs))
        for role, spec in specs.items():
            if role in fitting:
                wanted[role] = (cache, "--cache")
            elif (idm_cache if role == "idm" else vdm_cache) is None:
                notices.append(f"--cache {cache} does not apply to {spec.name}, which runs uncached ({_fitting(spec)})")
    for role, name, flag in (("idm", idm_cache, "--idm-cache"), ("vdm", vdm_cache, "--vdm-cache")):
        if name is None:
            continue
        if role not in specs:
            raise VsynthInputError(f"{flag} caches the {'image' if role == 'idm' else 'video'} model, and this run has none: drop it")
        if name == "none":
            wanted.pop(role, None)
            continue
        if not fits(name, specs[role]):
            raise VsynthInputError(_refusal(flag, name, {role: specs[role]}))
        wanted[role] = (name, flag)
    left, values = _split_options(options, set(specs))
    choices = {}
    for role, (name, flag) in wanted.items():
        kind = CACHES[name]
        given = {**{k: v for k, v in values["cache"].items() if k in kind.params.model_fields}, **values[role]}
        unknown = sorted(set(values[role]) - set(kind.params.model_fields))
        if unknown:
            raise InvalidParamsError(f"-o {role}.cache.{unknown[0]}: {name} has no such param; its params: {', '.join(kind.params.model_fields)}")
        try:
            choices[role] = CacheChoice(name, kind.params.model_validate(given))
        except ValidationError as exc:  # one line naming the option as typed, in the run options' words
            typed = {key: f"{role}.cache.{key}" if key in values[role] else f"cache.{key}" for key in given}
            raise InvalidParamsError(f"{describe(exc, kind.params, option=True, typed=typed)} ({name})") from None
    idle = [role for role in ("idm", "vdm") if values[role] and role not in choices]
    if idle:
        role = idle[0]
        raise InvalidParamsError(f"-o {role}.cache.{sorted(values[role])[0]}: the {'image' if role == 'idm' else 'video'} model runs no cache: "
                                 f"add --{role}-cache (or --cache), or drop it")  # fmt: skip
    shared = set(values["cache"]) - {k for role in choices for k in CACHES[choices[role].name].params.model_fields}
    if shared:
        raise InvalidParamsError(f"-o cache.{sorted(shared)[0]}: no cache of this run has that param" + ("" if choices else " (the run has no --cache)"))
    return choices, left, notices


def fits(name: str, spec) -> bool:
    """Whether cache ``name`` applies to the model of ``spec``: by its architecture; MagCache also needs the
    checkpoint's calibrated magnitude ratios, which diffusers 0.42 ships for FLUX.1 alone; token merging, a 2D UNet."""
    kind = CACHES[name]
    if name == "tome":  # tomesd reads the latent size from a 4D sample: frame-folded image UNets only
        return spec.architecture == "unet" and spec.kind == "idm"
    return kind.architecture == spec.architecture and (name != "magcache" or spec.name.split("/")[-1].startswith("flux"))


def _fitting(spec) -> str:
    names = [n for n in CACHES if fits(n, spec)]
    return f"its caches: {', '.join(names)}" if names else "no cache applies to it"


def _refusal(flag: str, name: str, specs: dict) -> str:
    kind = CACHES[name]
    what = {"magcache": "FLUX.1 transformers (diffusers 0.42 ships their calibration only)", "tome": "image models' UNets"}.get(name, f"{kind.architecture} models")
    models = "; ".join(f"{spec.name} is a {spec.architecture}, {_fitting(spec)}" for spec in specs.values())
    return f"{flag} {name} applies to {what}; {models}"


def _split_options(options: dict[str, Any], roles: set[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``cache.KEY``, ``idm.cache.KEY`` and ``vdm.cache.KEY`` options apart from the models' and bridge's."""
    left, values = {}, {"cache": {}, "idm": {}, "vdm": {}}
    for key, value in options.items():
        parts = key.split(".")
        if len(parts) == 2 and parts[0] == "cache":
            values["cache"][parts[1]] = value
        elif len(parts) == 3 and parts[0] in ("idm", "vdm") and parts[1] == "cache":
            if parts[0] not in roles:
                raise InvalidParamsError(f"-o {key}: this run has no {parts[0]}")
            values[parts[0]][parts[2]] = value
        else:
            left[key] = value
    return left, values


# ---------------------------------------------------------------------------- running


@dataclass
class _Track:
    """Where a network is in its sequence: the timestep of the current step and the calls made at it."""

    timestep: float | None = None
    step: int = -1
    call: int = 0
    leaf_calls: int = 0
    full_leaf_calls: int = 0
    forwards: list[int] = field(default_factory=list)  # leaf calls per forward


class StepCache:
    """One model's cache over its networks, for one run: :meth:`attach`, :meth:`reset` per sequence, :meth:`detach`."""

    def __init__(self, choice: CacheChoice, networks: list[torch.nn.Module]):
        self.choice = choice
        self.networks = networks
        self.tracks = {id(n): _Track() for n in networks}
        self._handles = []
        self._swapped: dict[int, list] = {}  # network -> hooks whose single ``state`` is swapped per context
        self._states: dict[tuple[int, int, str], Any] = {}
        self._deep: dict[int, _DeepCache] = {}
        self._magcache = None  # MagCacheConfig, shared by its hooks

    # -- lifecycle

    def attach(self) -> StepCache:
        import torch

        for network in self.networks:
            self._apply(network)
            setattr(network, _TAG, self)
            self._handles.append(network.register_forward_pre_hook(self._begin_call, with_kwargs=True))
            self._handles.append(network.register_forward_hook(self._end_call))
            for leaf in network.modules():
                if isinstance(leaf, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                    self._handles.append(leaf.register_forward_pre_hook(self._count_leaf(id(network))))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for network in self.networks:
            if hasattr(network, _TAG):
                delattr(network, _TAG)
            if self.choice.name == "deepcache":
                deep = self._deep.pop(id(network), None)
                if deep is not None:
                    deep.remove()
            elif self.choice.name == "tome":
                if hasattr(network, "_tome_info"):
                    import tomesd

                    tomesd.remove_patch(network)
            elif getattr(network, "is_cache_enabled", False):
                network.disable_cache()

    def reset(self, positions=None, total: int | None = None) -> None:
        """A new sequence begins, evaluating the steps ``positions`` (in order) of a schedule of ``total`` steps:
        forget every step's features and where the steps were."""
        if self._magcache is not None and positions is not None:  # its calibrated ratios, at the steps this sequence runs
            from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS, nearest_interp

            positions = list(positions)
            self._magcache.num_inference_steps = max(len(positions), 1)
            self._magcache.mag_ratios = nearest_interp(FLUX_MAG_RATIOS, total)[positions]
        for network in self.networks:
            track = self.tracks[id(network)]
            track.timestep, track.step, track.call = None, -1, 0
            if self.choice.name == "deepcache":
                self._deep[id(network)].states.clear()
            elif self.choice.name != "tome":
                network._reset_stateful_cache()
                self._states = {key: s for key, s in self._states.items() if key[0] != id(network)}

    # -- the techniques

    def _apply(self, network: torch.nn.Module) -> None:
        name, p = self.choice.name, self.choice.params
        if name == "deepcache":
            self._deep[id(network)] = _DeepCache(network, p.interval, p.depth)
            return
        if name == "tome":
            _apply_tome(network, p)
            return
        if not hasattr(network, "enable_cache"):
            raise VsynthInputError(f"{type(network).__name__} has no diffusers cache hooks (enable_cache): --cache {name} cannot apply to it")
        track = self.tracks[id(network)]
        scale = 1000.0 if type(network).__name__.startswith("Flux") else 1.0  # FLUX's transformer takes t / 1000
        now = lambda: (track.timestep or 0.0) * scale  # noqa: E731  the current step's timestep, 0-1000
        if name == "fastercache":  # its hook skips with an empty cache when a sequence begins inside its range (an SDEdit
            # from t 400 crashed): the first step reads as outside it, so that every block computes and caches once
            first, now = now, lambda: float("inf") if track.step <= 0 else first()  # noqa: E731
        config = _diffusers_config(name, p, now)
        network.enable_cache(config)
        if name == "magcache":
            self._magcache = config
        from diffusers.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(network)
        hooks = [h for r in (registry, *registry._get_child_registries()) for h in r.hooks.values()]
        self._swapped[id(network)] = [h for h in hooks if h._is_stateful and hasattr(h, "state")]

    def _begin_call(self, network, args, kwargs):
        track = self.tracks[id(network)]
        t = _timestep(args, kwargs)
        if t != track.timestep:
            track.timestep, track.step, track.call = t, track.step + 1, 0
        context = f"call{track.call}"
        track.call += 1
        track.leaf_calls = 0
        if self.choice.name == "deepcache":
            self._deep[id(network)].enter(context)
        elif self.choice.name != "tome":
            from diffusers.hooks.hooks import CacheContext, _set_cache_context

            _set_cache_context(network, CacheContext(context, step_index=track.step, timestep=t))
            for hook in self._swapped[id(network)]:  # PAB and FasterCache keep one state per hook: one per context here
                key = (id(network), id(hook), context)
                if key not in self._states:
                    self._states[key] = type(hook.state)()
                hook.state = self._states[key]

    def _end_call(self, network, args, output):
        track = self.tracks[id(network)]
        track.forwards.append(track.leaf_calls)
        track.full_leaf_calls = max(track.full_leaf_calls, track.leaf_calls)

    def _count_leaf(self, key: int):
        track = self.tracks[key]

        def hook(_module, _args):
            track.leaf_calls += 1

        return hook

    def record(self) -> dict:
        """run.json's account: forwards in full and with reused features, and the share of layer calls that ran."""
        forwards = full = ran = most = 0
        for track in self.tracks.values():
            forwards += len(track.forwards)
            full += sum(1 for n in track.forwards if n >= track.full_leaf_calls)
            ran += sum(track.forwards)
            most += track.full_leaf_calls * len(track.forwards)
        return {**self.choice.record(), "forwards": forwards, "full_forwards": full, "cached_forwards": forwards - full,
                "layer_calls_run": round(ran / most, 4) if most else None}  # fmt: skip


def _timestep(args, kwargs) -> float | None:
    """The timestep of a network call (UNets: the second argument; transformers: ``timestep``), as one number."""
    import torch

    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return float(t.detach().float().max()) if t.numel() else None
    return float(t)


def _diffusers_config(name: str, p: CacheParams, now):
    import torch
    from diffusers.hooks import FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig, PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig

    if name == "first-block":
        return FirstBlockCacheConfig(threshold=p.threshold)
    if name == "taylorseer":
        # the attention and feed-forward modules of every block (diffusers' default matches modules named 'attn' alone: FLUX's, not Wan's attn1/attn2)
        return TaylorSeerCacheConfig(cache_interval=p.interval, disable_cache_before_step=p.warmup, max_order=p.order,
                                     taylor_factors_dtype=torch.float32, cache_identifiers=[TAYLORSEER_MODULES])  # fmt: skip
    if name == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return MagCacheConfig(threshold=p.threshold, max_skip_steps=p.max_skip, retention_ratio=p.retention, mag_ratios=FLUX_MAG_RATIOS,
                              num_inference_steps=len(FLUX_MAG_RATIOS))  # fmt: skip
    if name == "pab":
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=p.skip, cross_attention_block_skip_range=p.cross_skip or None,
            spatial_attention_timestep_skip_range=(p.low, p.high), cross_attention_timestep_skip_range=(p.low, p.high),
            current_timestep_callback=now,
        )  # fmt: skip
    if name == "fastercache":
        # vsynth runs the conditional and unconditional passes apart (no batched CFG to split): FasterCache's
        # attention extrapolation runs, its reuse of the unconditional branch cannot
        return FasterCacheConfig(spatial_attention_block_skip_range=p.skip, spatial_attention_timestep_skip_range=(p.low, p.high),
                                 attention_weight_callback=lambda _m: p.weight, current_timestep_callback=now,
                                 is_guidance_distilled=True, tensor_format="BCFHW")  # fmt: skip
    raise ValueError(name)


class _DeepCache:
    """DeepCache on a diffusers UNet (2D, 3D or motion): at a full step every block runs and the blocks below the
    shallow branch (down blocks ``depth:``, the mid block, up blocks ``:-depth``) keep their outputs; at the other
    steps those blocks return the kept outputs without running, and only the outer ``depth`` down and up blocks run,
    on the fresh skip connections of the outer blocks. One state per call context (see the module's docstring)."""

    def __init__(self, unet: torch.nn.Module, interval: int, depth: int):
        for part in ("down_blocks", "mid_block", "up_blocks"):
            if getattr(unet, part, None) is None:
                raise VsynthInputError(f"deepcache needs a diffusers UNet (down, mid and up blocks); {type(unet).__name__} has no {part}")
        if depth >= len(unet.down_blocks):
            raise InvalidParamsError(f"-o cache.depth={depth}: {type(unet).__name__} has {len(unet.down_blocks)} down blocks; take at most {len(unet.down_blocks) - 1}")
        self.interval = interval
        self.states: dict[str, dict] = {}
        self.current: dict | None = None
        self.blocks = [*unet.down_blocks[depth:], unet.mid_block, *unet.up_blocks[: len(unet.up_blocks) - depth]]
        for i, block in enumerate(self.blocks):
            block.forward = self._wrap(i, block.forward)

    def enter(self, context: str) -> None:
        state = self.states.setdefault(context, {"calls": 0, "outputs": {}})
        state["full"] = state["calls"] % self.interval == 0 or not state["outputs"]
        state["calls"] += 1
        self.current = state

    def _wrap(self, index: int, forward):
        def cached_forward(*args, **kwargs):
            state = self.current
            if state is None or state["full"]:
                output = forward(*args, **kwargs)
                if state is not None:
                    state["outputs"][index] = output
                return output
            return state["outputs"][index]

        return cached_forward

    def remove(self) -> None:
        for block in self.blocks:
            del block.forward  # the instance attribute: the class's forward again


def _apply_tome(unet: torch.nn.Module, params: ToMeParams) -> None:
    try:
        import tomesd
    except ImportError:
        raise VsynthInputError('token merging (tome) needs tomesd: pip install "vsynth[tome]"') from None
    # use_rand=False: tomesd's random choice of merge targets draws from a generator of its own, outside the run's seed
    tomesd.apply_patch(unet, ratio=params.ratio, max_downsample=params.max_downsample, use_rand=False)


def attach(models: dict, choices: dict[str, CacheChoice]) -> dict[str, StepCache]:
    """Attach each role's cache to its model's networks (its UNets or transformers, and an IDM's inversion UNet)."""
    caches = {}
    for role, choice in choices.items():
        model = models[role]
        networks = list(model.unets())
        inversion = getattr(model, "inversion_denoiser", None)
        if inversion is not None and all(inversion.unet is not n for n in networks):
            networks.append(inversion.unet)
        caches[role] = StepCache(choice, networks)
        try:
            caches[role].attach()
        except Exception:
            detach(caches)
            raise
    return caches


def detach(caches: dict[str, StepCache]) -> None:
    for cache in caches.values():
        cache.detach()


def reset(denoiser, positions=None, total: int | None = None) -> None:
    """A sequence of steps begins on ``denoiser`` (the steps ``positions`` of a schedule of ``total``): its model's cache
    (if any) forgets the last sequence's features."""
    cache = getattr(getattr(denoiser, "unet", None), _TAG, None)
    if cache is not None:
        cache.reset(positions, total)

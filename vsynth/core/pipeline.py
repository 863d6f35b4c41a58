"""One run, from a validated config to a written output folder.

``plan_run`` checks everything a user can get wrong (names, options, video, output folder,
weights) without loading a model; ``execute`` loads the models, prepares the inputs, lets the
bridge compose them, decodes and writes. Read top to bottom, this is the whole run.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from vsynth import __version__
from vsynth.core import video as videoio
from vsynth.core.config import RunConfig, route_options, validate_params
from vsynth.core.outputs import atomic_dir, choose_out_dir
from vsynth.core.progress import Stages
from vsynth.core.registry import Registry, get_registry
from vsynth.core.specs import BridgeSpec, ModelSpec, Params
from vsynth.core.weights import locate, resolve_sources, weight_flags
from vsynth.errors import VideoError, VsynthInputError

VAE_MULTIPLE = 8
DEFAULT_FPS = 8.0


@dataclass
class RunPlan:
    """A run whose every input has been checked; nothing heavy is loaded yet."""

    config: RunConfig
    idm: ModelSpec
    vdm: ModelSpec
    bridge: BridgeSpec
    params: dict[str, Params]
    sources: dict[str, dict[str, str]]
    video: videoio.VideoInfo
    height: int
    width: int
    out_dir: Path


@dataclass
class RunReport:
    out_dir: Path
    record: dict = field(default_factory=dict)  # what run.json holds


def plan_run(config: RunConfig, registry: Registry | None = None) -> RunPlan:
    """Validate a run before anything heavy happens; raises a VsynthInputError subclass."""
    registry = registry or get_registry()
    idm = registry.model(config.idm, "idm")
    vdm = registry.model(config.vdm, "vdm")
    bridge = registry.bridge(config.bridge)

    routed = route_options(config.options, {"idm": idm.params, "vdm": vdm.params, "bridge": bridge.params})
    params = {
        "idm": validate_params(idm.params, routed["idm"], "idm"),
        "vdm": validate_params(vdm.params, routed["vdm"], "vdm"),
        "bridge": validate_params(bridge.params, {**idm.bridge_defaults.get(bridge.name, {}), **routed["bridge"]}, "bridge"),
    }

    info = videoio.probe_video(config.video)
    needed = (config.frames - 1) * config.stride + 1
    if info.num_frames < needed:
        available = (info.num_frames - 1) // config.stride + 1
        raise VideoError(
            f"{config.video} has {info.num_frames} frames; at stride {config.stride} that gives {available}, "
            f"fewer than the {config.frames} requested: lower --frames or --stride"
        )
    height, width = videoio.round_size(config.height, config.width, VAE_MULTIPLE)
    out_dir = choose_out_dir(config.out, f"{idm.name}-{vdm.name}")

    sources = {}
    for role, spec, primary in (("idm", idm, config.idm_weights), ("vdm", vdm, config.vdm_weights)):
        wanted = resolve_sources(spec, primary, params[role].model_dump(), config.tiny)
        flags = weight_flags(spec)
        sources[role] = {w.role: locate(w, wanted[w.role], flags[w.role]) for w in spec.weights}
    return RunPlan(config, idm, vdm, bridge, params, sources, info, height, width, out_dir)


def _runtime(device: str):
    import torch

    from vsynth.core.models import Runtime

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise VsynthInputError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VsynthInputError(f"device '{device}' requested but CUDA is not available: use --device cpu")
    return Runtime(device=dev, dtype=torch.float16 if dev.type == "cuda" else torch.float32)


def execute(plan: RunPlan, display=None) -> RunReport:
    """Load, prepare, bridge, decode, write. ``display`` is an optional rich Progress."""
    import torch

    from vsynth.core.bridge import BridgeInputs
    from vsynth.core.models import EvalCounter

    config = plan.config
    runtime = _runtime(config.device)
    stages = Stages(display)
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)

    with stages.stage("loading models", total=2) as advance:
        idm = plan.idm.load_impl().load(plan.idm, plan.params["idm"], plan.sources["idm"], runtime)
        advance(1)
        vdm = plan.vdm.load_impl().load(plan.vdm, plan.params["vdm"], plan.sources["vdm"], runtime)
        advance(1)
    bridge = plan.bridge.load_impl()(plan.bridge, plan.params["bridge"])
    counter = EvalCounter()
    for role, model in (("idm", idm), ("vdm", vdm)):
        for unet in model.unets():
            counter.attach(unet, role)

    with stages.stage("reading video", total=config.frames) as advance:
        source = videoio.read_video(config.video, frames=config.frames, stride=config.stride, size=(plan.height, plan.width))
        advance(config.frames)
    with stages.stage("preparing conditions", total=1) as advance:
        frame_inputs = idm.prepare(source.frames)
        advance(1)

    inputs = BridgeInputs(
        frames=config.frames,
        height=plan.height,
        width=plan.width,
        steps=config.steps,
        guidance=config.guidance,
        prompt=config.prompt,
        image_prompt=config.image_prompt,
        negative_prompt=config.negative_prompt,
        source_frames=source.frames,
        frame_inputs=frame_inputs,
    )
    generator = torch.Generator("cpu").manual_seed(config.seed)
    result = bridge.run(idm, vdm, inputs, generator, stages)
    counter.detach()

    with stages.stage("decoding", total=config.frames) as advance:
        frames = result.codec.decode(result.latents, advance)

    fps = source.fps or DEFAULT_FPS
    idm_frames = result.intermediates.get("idm_frames")
    condition = frame_inputs.condition_frames
    record = {
        "vsynth": __version__,
        "task": plan.idm.task,
        "config": json.loads(config.model_dump_json()),
        "models": {
            role: {"name": spec.name, "plugin": spec.plugin, "params": plan.params[role].model_dump(), "weights": plan.sources[role]}
            for role, spec in (("idm", plan.idm), ("vdm", plan.vdm))
        },
        "bridge": {"name": plan.bridge.name, "plugin": plan.bridge.plugin, "params": plan.params["bridge"].model_dump()},
        "seed": config.seed,
        "frames": config.frames,
        "height": plan.height,
        "width": plan.width,
        "fps": fps,
        "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "nfe": dict(counter.calls),
        "frame_evals": dict(counter.frame_evals),
        "metrics": {
            "mean_abs_frame_difference": {
                "source": videoio.mean_abs_frame_difference(source.frames),
                **({"idm": videoio.mean_abs_frame_difference(idm_frames)} if idm_frames is not None else {}),
                "final": videoio.mean_abs_frame_difference(frames),
            }
        },
        "versions": _versions(),
    }

    files = {"video.mp4", "video.gif", "grid.png", "run.json"}
    files |= {"idm_frames.mp4"} if idm_frames is not None else set()
    files |= {"condition.mp4"} if condition is not None else set()
    files |= {"latents.safetensors"} if config.save_latents else set()
    with atomic_dir(plan.out_dir) as tmp:
        with stages.stage("writing", total=len(files)) as advance:
            videoio.write_mp4(tmp / "video.mp4", frames, fps)
            videoio.write_gif(tmp / "video.gif", frames, fps)
            advance(2)
            if idm_frames is not None:
                videoio.write_mp4(tmp / "idm_frames.mp4", idm_frames, fps)
                advance(1)
            if condition is not None:
                videoio.write_mp4(tmp / "condition.mp4", condition, fps)
                advance(1)
            rows = [("source", source.frames), ("condition", condition), ("IDM", idm_frames), ("final", frames)]
            videoio.make_grid([(label, f) for label, f in rows if f is not None]).save(tmp / "grid.png")
            advance(1)
            if config.save_latents:
                from safetensors.torch import save_file

                save_file({"latents": result.latents.float().cpu().contiguous()}, str(tmp / "latents.safetensors"))
                advance(1)
        record["files"] = sorted(files)
        record["timings"] = dict(stages.timings)
        record["peak_memory_mb"], record["peak_memory_source"] = _peak_memory(runtime.device)
        (tmp / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return RunReport(out_dir=plan.out_dir, record=record)


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

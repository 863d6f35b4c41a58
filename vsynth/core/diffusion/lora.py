"""LoRAs on a model's denoising networks (``--idm-lora``, ``--vdm-lora``), through diffusers' LoRA loaders and peft.

A LoRA is named ``PATH_OR_ID[:SCALE]``: a ``.safetensors`` file, a folder holding one, a hub repo
(``org/repo``, its ``pytorch_lora_weights.safetensors``) or a file in one (``org/repo/file.safetensors``),
or one of the model's presets (``ModelSpec.loras``, listed by ``vsynth models NAME``), which also set the
solver, steps and guidance it was distilled for. Every format diffusers' loader of the family converts
(kohya, the original Wan and FLUX trainers', peft) is accepted: the family's mixin converts the keys.

Before any weights load, :func:`check_plan` reads the LoRA's safetensors header (names and shapes, no
tensors) and the network's, converts the LoRA's names as the family's loader would (on PyTorch's meta
device) and refuses, in one line, a LoRA whose layers the network does not have or whose shapes differ:
a LoRA for another architecture. After loading, :func:`apply` checks again against the module itself
(where the network's files were not on disk before) and loads each LoRA as a peft adapter with
``load_lora_adapter``, at its scale (``set_adapters``); with ``--fuse-lora`` the adapters are merged into
the weights (``fuse_lora``) and removed (``unload_lora``): no cost per step. A fused layer's weight is
copied first, because vsynth shares UNet tensors between models (an SD1.5 IDM and AnimateDiff).

The text-encoder layers some SD LoRAs carry are not applied (text encoders are shared between models
and runs); a warning says so.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from vsynth.core.host.specs import LoraPreset, ModelSpec
from vsynth.errors import InvalidWeightsError, LoraError, VsynthWarning, shorten

LORA_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
NETWORK_FOLDERS = ("unet", "transformer", "transformer_2")  # where a pipeline folder keeps its denoising networks


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA of a run, located and checked: ``path`` is its safetensors file on this machine."""

    text: str  # as the user typed it
    flag: str  # --idm-lora or --vdm-lora
    path: str
    scale: float
    preset: LoraPreset | None = None

    def record(self) -> dict:
        return {"lora": self.text, "file": self.path, "scale": self.scale, "preset": self.preset.name if self.preset else None}


def parse(text: str, flag: str = "") -> tuple[str, float | None]:
    """``PATH_OR_ID[:SCALE]`` -> (source, scale or None); ``flag`` (--idm-lora) begins an error's line."""
    source, sep, tail = text.rpartition(":")
    if sep and source:
        try:
            scale = float(tail)
        except ValueError:
            if Path(text).expanduser().exists() or "/" in tail or "\\" in tail or len(source) == 1:  # a path with a ':' (C:\...)
                return text, None
            raise LoraError(f"{flag} {text}: the scale after ':' must be a number".lstrip()) from None
        if not math.isfinite(scale):
            raise LoraError(f"{flag} {text}: the scale after ':' must be a finite number".lstrip())
        return source, scale
    return text, None


def resolve(spec: ModelSpec, text: str, flag: str) -> LoraRequest:
    """Locate ``text`` for ``spec``: a preset, a file, a folder or a hub repo; one line when it cannot be found."""
    source, scale = parse(text.strip(), flag)
    if not source:
        raise LoraError(f'{flag} "": is empty: name a .safetensors file, a folder, a hub id or a preset of {spec.name}')
    preset = next((p for p in spec.loras if p.name == source), None)
    if preset is not None:
        path = _hub_file(preset.id, preset.file, flag, text)
        return LoraRequest(text, flag, path, preset.scale if scale is None else scale, preset)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise LoraError(f"{flag} {shorten(text)}: vsynth reads LoRAs from .safetensors files only (a pickle can run code when loaded)")
        return LoraRequest(text, flag, str(path.resolve()), 1.0 if scale is None else scale)
    if path.is_dir():
        return LoraRequest(text, flag, str(_in_folder(path, flag, text)), 1.0 if scale is None else scale)
    presets = f"; {spec.name}'s presets: {', '.join(p.name for p in spec.loras)}" if spec.loras else ""
    parts = source.split("/")
    if len(parts) == 1 and (owners := _preset_owners(source)):
        raise LoraError(f"{flag} {shorten(text)}: is a preset of {', '.join(owners)}, not of {spec.name}{presets}")
    # folder/name.safetensors is a file that is not there: a hub id's file comes third (org/repo/file.safetensors)
    local = len(parts) == 2 and source.endswith(".safetensors")
    if source.startswith((".", "/", "~")) or len(parts) < 2 or not all(parts) or local:
        raise LoraError(f"{flag} {shorten(text)}: no such file or folder, nor a hub id (org/repo[/file.safetensors]){presets}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or LORA_FILE
    return LoraRequest(text, flag, _hub_file(repo, filename, flag, text), 1.0 if scale is None else scale)


def _preset_owners(name: str) -> list[str]:
    """The registered models that have a LoRA preset called ``name``."""
    from vsynth.core.host.registry import get_registry

    return sorted({spec.name for spec in get_registry().models.values() if any(p.name == name for p in spec.loras)})


def _in_folder(folder: Path, flag: str, text: str) -> Path:
    if (folder / LORA_FILE).is_file():
        return folder / LORA_FILE
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        found = f"{len(files)} .safetensors files" if files else "no .safetensors file"
        raise LoraError(f"{flag} {shorten(text)}: the folder holds {found}; name the LoRA file itself")
    return files[0]


def _hub_file(repo: str, filename: str, flag: str, text: str) -> str:
    """The LoRA file from the hub cache, else downloaded (a LoRA is small beside the model); one line when neither works."""
    from vsynth.core.diffusion.weights import hub_file
    from vsynth.errors import WeightsUnavailableError

    try:
        return hub_file(repo, filename)
    except WeightsUnavailableError as exc:
        raise LoraError(f"{flag} {shorten(text)}: {exc}; download the file and pass its path") from None


# ---------------------------------------------------------------------------- reading and converting keys


def header(path: str | Path, model: bool = False, flag: str = "") -> dict[str, list[int]]:
    """Tensor names and shapes of a safetensors file, from its header alone: a LoRA's, or (``model``) one of the model's
    own weight files, which the error then blames instead."""
    from vsynth.core.diffusion.weights import safetensors_header

    entries = safetensors_header(path)
    if entries is None:
        error, what = (InvalidWeightsError, "the model's weights") if model else (LoraError, "the LoRA")
        raise error(f"{flag} {path} is not a readable safetensors file (truncated or corrupt); re-download or re-export {what}".lstrip())
    return {name: entry["shape"] for name, entry in entries.items()}


def _loader(class_name: str):
    """(diffusers' LoRA loader mixin of the pipelines that run this network class, the prefix its keys carry)."""
    from diffusers.loaders import lora_pipeline as pipelines

    if class_name.startswith("UNet"):  # SD1.5, SDXL, AnimateDiff's UNetMotionModel: the same kohya/peft conversion
        return pipelines.StableDiffusionLoraLoaderMixin, "unet"
    if class_name.startswith("Wan"):
        return pipelines.WanLoraLoaderMixin, "transformer"
    if class_name.startswith("Flux"):
        return pipelines.FluxLoraLoaderMixin, "transformer"
    if class_name.startswith("HunyuanVideo"):
        return pipelines.HunyuanVideoLoraLoaderMixin, "transformer"
    if class_name.startswith("LTX"):
        return pipelines.LTXVideoLoraLoaderMixin, "transformer"
    return None, "transformer"


def convert(class_name: str, tensors: dict) -> tuple[dict, dict | None, dict | None]:
    """(state dict in diffusers' names, network alphas, adapter metadata) as the family's loader converts ``tensors``
    (a path, or a dict of tensors: meta tensors convert names and shapes without data)."""
    mixin, _ = _loader(class_name)
    if mixin is None:
        if isinstance(tensors, dict):
            return tensors, None, None
        from safetensors.torch import load_file

        return load_file(tensors), None, None
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)  # format-detection chatter
    out = mixin.lora_state_dict(tensors, return_lora_metadata=True)
    if len(out) == 3:
        return out
    state, metadata = out
    return state, None, metadata


def pairs(state: dict, prefix: str) -> tuple[dict[str, tuple[list[int], list[int]]], int]:
    """The network's LoRA layers: module name -> (lora_A shape, lora_B shape), with ``prefix`` removed; and how many
    layers belong elsewhere (the text encoders')."""
    layers: dict[str, dict[str, list[int]]] = {}
    elsewhere = set()
    if any("_lora.down." in key or "_lora.up." in key for key in state):  # SD's kohya keys convert to the old attention-
        from diffusers.utils import convert_unet_state_dict_to_peft  # processor names, which the UNet's loader renames

        state = convert_unet_state_dict_to_peft(state)
    for key, tensor in state.items():
        shape = list(getattr(tensor, "shape", tensor))
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0]
                if module.startswith(f"{prefix}."):
                    layers.setdefault(module.removeprefix(f"{prefix}."), {})[part] = shape
                elif "." in module and module.split(".")[0].startswith("text_encoder"):
                    elsewhere.add(module)
                else:
                    layers.setdefault(module, {})[part] = shape
    return {m: (s.get("lora_A", []), s.get("lora_B", [])) for m, s in layers.items()}, len(elsewhere)


def misfits(layers: dict[str, tuple[list[int], list[int]]], shapes: dict[str, list[int]]) -> list[str]:
    """The LoRA layers the network lacks, or whose (in, out) differ from the network's weight, each said in words."""
    problems = []
    for module, (down, up) in layers.items():
        weight = shapes.get(f"{module}.weight")
        if weight is None:
            problems.append(f"{module} (not a layer of it)")
        elif len(down) >= 2 and len(up) >= 1 and (weight[0] != up[0] or weight[1] != down[1]):
            problems.append(f"{module} ({down[1]} -> {up[0]} features; the network's layer has {weight[1]} -> {weight[0]})")
    return problems


def refuse_misfit(request: LoraRequest, spec: ModelSpec, class_name: str, layers: dict, shapes: dict) -> None:
    """One line when the LoRA holds no layer for the network, or any layer that does not fit it."""
    what = f"{request.flag} {shorten(request.text)}"
    if not layers:
        raise LoraError(f"{what}: holds no LoRA layers for {spec.name}'s {class_name} (a LoRA of another kind, or for a text encoder only)")
    problems = misfits(layers, shapes)
    if problems:
        raise LoraError(
            f"{what}: {len(problems)} of its {len(layers)} layers do not fit {spec.name}'s {class_name}, e.g. {problems[0]}: "
            f"a LoRA for another architecture? (`vsynth models {spec.name}` lists its presets)"
        )


# ---------------------------------------------------------------------------- before loading


def check_plan(spec: ModelSpec, request: LoraRequest, sources: dict[str, str]) -> None:
    """Refuse, before any weights load, a LoRA that does not fit the network whose files are on disk.

    The network is read where its pipeline folder keeps it (``unet/``, ``transformer/``); a model built of
    several files (AnimateDiff: SD1.5's UNet and a motion adapter) adds the weights files at the root of its
    other sources. Nothing is checked when the network's files are not on this machine yet (after loading,
    :func:`apply` checks against the module)."""
    import torch

    network = _network_on_disk(sources)
    if network is None:
        return
    class_name, shapes = network
    import diffusers
    from diffusers.loaders.peft import PeftAdapterMixin

    cls = getattr(diffusers, class_name, None)
    if isinstance(cls, type) and not issubclass(cls, PeftAdapterMixin):
        _refuse_no_loader(request.flag, spec, class_name)
    names = header(request.path, flag=request.flag)
    alphas = {}
    if any(k.endswith("alpha") for k in names):
        from safetensors import safe_open

        with safe_open(request.path, "pt") as file:
            alphas = {k: file.get_tensor(k) for k in names if k.endswith("alpha")}
    meta = {k: alphas.get(k, torch.empty(shape, device="meta")) for k, shape in names.items()}
    try:
        state, _, _ = convert(class_name, meta)
    except Exception:  # noqa: BLE001 - a converter that needs values, not shapes: apply() checks after loading
        return
    layers, _ = pairs(state, _loader(class_name)[1])
    refuse_misfit(request, spec, class_name, layers, shapes)


def _network_on_disk(sources: dict[str, str]) -> tuple[str, dict[str, list[int]]] | None:
    """(class name, parameter shapes) of the denoising network(s) in ``sources``, from configs and headers, or None."""
    from vsynth.core.run.memory import _folder

    class_name, shapes = None, {}
    roots = []
    for source in sources.values():
        folder = _folder(source)
        if folder is None:
            continue
        if folder.is_file():
            roots.append(folder)
            continue
        found = False
        for sub in NETWORK_FOLDERS:
            config = folder / sub / "config.json"
            if config.is_file():
                found = True
                class_name = class_name or json.loads(config.read_text()).get("_class_name", "")
                for file in (folder / sub).glob("*.safetensors"):
                    shapes.update(header(file, model=True))
        if not found:
            roots += list(folder.glob("*.safetensors"))
    if class_name is None:
        return None
    for file in roots:
        if file.suffix == ".safetensors":
            shapes.update(header(file, model=True))
    return class_name, shapes


# ---------------------------------------------------------------------------- loading


def apply(model, requests: list[LoraRequest], fuse: bool) -> list[dict]:
    """Load ``requests`` into every denoising network of ``model`` (``model.unets()``: both Wan 2.2 experts, an IDM's
    inversion UNet), at their scales, fused or as adapters; returns what run.json records."""
    from diffusers.loaders.peft import PeftAdapterMixin

    spec = model.spec
    networks = list({id(n): n for n in model.unets()}.values())
    for network in networks:
        class_name = type(network).__name__
        if not isinstance(network, PeftAdapterMixin):
            _refuse_no_loader(requests[0].flag, spec, class_name)
        shapes = {name: list(t.shape) for name, t in network.state_dict().items()}
        prefix = _loader(class_name)[1]
        names = []
        for index, request in enumerate(requests):
            state, alphas, metadata = convert(class_name, request.path)
            layers, elsewhere = pairs(state, prefix)
            refuse_misfit(request, spec, class_name, layers, shapes)
            if elsewhere and network is networks[0]:
                warnings.warn(
                    f"{request.flag} {shorten(request.text)}: its {elsewhere} text-encoder layers are not applied (vsynth applies "
                    "LoRAs to the denoising network; text encoders are shared between models)",
                    VsynthWarning,
                    stacklevel=2,
                )
            own = any(k.startswith(f"{prefix}.") for k in state)
            name = f"lora{index}"
            try:
                with warnings.catch_warnings():  # a second adapter: peft's "Already found a peft_config ... know what you are doing"
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
                    network.load_lora_adapter(
                        state, prefix=prefix if own else None, adapter_name=name,
                        network_alphas=alphas if own else None, metadata=None if alphas else metadata,
                    )  # fmt: skip
            except (ValueError, RuntimeError, KeyError) as exc:  # what diffusers and peft raise on a LoRA they cannot take
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise LoraError(f"{request.flag} {shorten(request.text)}: diffusers cannot load it into {spec.name}'s {class_name}: {reason}") from None
            names.append(name)
        network.set_adapters(names, weights=[r.scale for r in requests])
        if fuse:
            _own_weights(network)
            network.fuse_lora(adapter_names=names)
            network.unload_lora()
    return [{**r.record(), "fused": fuse} for r in requests]


def _own_weights(network) -> None:
    """Give each LoRA layer's base weight a tensor of its own before fusing writes into it: UNet tensors are shared
    between models on the same files (vsynth.core.diffusion.components.load)."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in network.modules():
        if isinstance(module, BaseTunerLayer):
            base = module.get_base_layer()
            base.weight = torch.nn.Parameter(base.weight.detach().clone(), requires_grad=False)


def _refuse_no_loader(flag: str, spec: ModelSpec, class_name: str) -> None:
    raise LoraError(f"{flag}: {spec.name}'s {class_name} has no LoRA loader in diffusers (it is not a PeftAdapterMixin): drop the LoRA, or choose another model")

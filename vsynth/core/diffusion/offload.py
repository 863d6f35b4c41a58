"""Offloading: weights kept in host memory and moved to the accelerator as they run (``--offload``).

``model`` is diffusers' ``enable_model_cpu_offload``: each network moves to the device whole when
called and stays there until another one is called, which sends it back to the CPU. diffusers fixes
that predecessor from a static sequence (text encoder -> UNet -> VAE); a vsynth run's sequence
depends on the bridge (BIVDiff returns to the image model's UNet after its VAE), so here the
predecessor is whichever unit ran last. A unit is a UNet with the networks that condition it at
every step (a ControlNet, a T2I-Adapter), which would otherwise swap places with it each step.

``sequential`` is diffusers' ``enable_sequential_cpu_offload``: accelerate's ``cpu_offload`` on
every network, which moves each layer's weights to the device for its own forward only.

``group`` is diffusers' group offloading: blocks of layers move together, the next prefetched on a
CUDA stream while the current one computes (:class:`GroupOffload`).
"""

from __future__ import annotations

import weakref

import torch
from accelerate.hooks import CpuOffload, add_hook_to_module
from accelerate.utils import send_to_device

# The device each offloaded network computes on: its parameters say "cpu" (model offload between
# uses) or "meta" (sequential offload), never where its inputs must go.
_EXECUTION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes: its offload device, else where its parameters are."""
    device = _EXECUTION.get(module)
    if device is not None:
        return device
    return next(module.parameters()).device


class ModelOffload:
    """``--offload model``: one unit of networks on the device at a time, moved there when one of them runs.

    ``moves`` names the units in the order they came onto the device: what a run used, and when.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.units: dict[str, list[torch.nn.Module]] = {}
        self.resident: str | None = None
        self.moves: list[str] = []

    def add(self, name: str, modules: list[torch.nn.Module]) -> None:
        for module in modules:
            # A network shared with an earlier model set (same placement) changes hands: its weights are whole
            add_hook_to_module(module, _UnitHook(self, name))  # replaces any hook; moves it to the CPU
            _EXECUTION[module] = self.device
        self.units[name] = modules

    def enter(self, name: str) -> None:
        """The unit ``name`` is about to run: send the one on the device back first."""
        if name == self.resident:
            return
        self.release()
        self.resident = name
        self.moves.append(name)

    def release(self) -> None:
        """Send the unit on the device back to the CPU (after a run, as diffusers' maybe_free_model_hooks)."""
        if self.resident is not None:
            for module in self.units[self.resident]:
                module.to("cpu")
            self.resident = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


class _UnitHook(CpuOffload):
    """accelerate's CpuOffload (move the module and its inputs to the device), whose predecessor is
    whatever unit of the run ran last."""

    def __init__(self, offload: ModelOffload, unit: str):
        super().__init__(execution_device=offload.device)
        self.offload, self.unit = offload, unit

    def pre_forward(self, module, *args, **kwargs):
        self.offload.enter(self.unit)
        args, kwargs = super().pre_forward(module, *args, **kwargs)  # skips the inputs when the module was there already
        return send_to_device(args, self.execution_device), send_to_device(kwargs, self.execution_device)


class SequentialOffload:
    """``--offload sequential``: accelerate's ``cpu_offload`` on every network (weights on the meta device
    until each layer runs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.units: dict[str, list[torch.nn.Module]] = {}

    def add(self, name: str, modules: list[torch.nn.Module]) -> None:
        from accelerate import cpu_offload

        for module in modules:
            if not hasattr(module, "_hf_hook"):  # else offloaded already, for an earlier model set sharing it
                cpu_offload(module, execution_device=self.device)
            _EXECUTION[module] = self.device
        self.units[name] = modules

    def release(self) -> None:
        """Nothing stays on the device between layers."""


class GroupOffload:
    """``--offload group``: diffusers' group offloading (``apply_group_offloading``). Weights stay in host memory and
    move to the GPU a group at a time: a diffusers network (UNet, transformer) by its top-level blocks, one block per
    group, other networks (text encoders) layer by layer. On CUDA the next group is copied on a separate stream while
    the current one computes (``use_stream``), so that the transfers overlap the compute: about model offload's speed at
    little more than sequential offload's memory.

    On the CPU it is refused like every offload mode (weights are in host memory already); the wiring is tested with
    the CPU as its own onload device, without streams."""

    def __init__(self, device: torch.device):
        self.device = device
        self.units: dict[str, list[torch.nn.Module]] = {}

    def add(self, name: str, modules: list[torch.nn.Module]) -> None:
        from diffusers import ModelMixin
        from diffusers.hooks import apply_group_offloading
        from diffusers.hooks.group_offloading import _is_group_offload_enabled

        stream = self.device.type == "cuda"
        for module in modules:
            if not _is_group_offload_enabled(module):  # else offloaded already, for an earlier model set sharing it
                level = {"offload_type": "block_level", "num_blocks_per_group": 1} if isinstance(module, ModelMixin) else {"offload_type": "leaf_level"}
                apply_group_offloading(module, onload_device=self.device, offload_device=torch.device("cpu"), use_stream=stream,
                                       record_stream=stream, **level)  # fmt: skip
            _EXECUTION[module] = self.device
        self.units[name] = modules

    def release(self) -> None:
        """Each group goes back to host memory after it runs."""


def apply_offload(mode: str, device: torch.device, units: dict[str, list[torch.nn.Module]]) -> ModelOffload | SequentialOffload | GroupOffload | None:
    """Hook the run's networks, unit by unit (name -> networks, in the order a run uses them); a network
    that two models share (a VAE, a text encoder) is hooked once, in its first unit."""
    if mode == "none":
        return None
    offload = {"model": ModelOffload, "sequential": SequentialOffload, "group": GroupOffload}[mode](device)
    hooked: set[int] = set()
    for name, modules in units.items():
        fresh = [m for m in modules if id(m) not in hooked]
        hooked |= {id(m) for m in fresh}
        if fresh:
            offload.add(name, fresh)
    return offload

"""What every model provides to bridges: a denoiser over latent videos, a VAE codec, and (for image
models) the inputs it prepares from the sources and its frame-wise generation.

Models are adapters over diffusers components; bridges are algorithms over these interfaces
and never import diffusers. Latent videos are always (B, C, F, H, W).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.components import VaeCodec
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import BridgeInputs, FrameInputs, Runtime, Sources
from vsynth.core.host.specs import ModelSpec, Params


class Model(ABC):
    """What image and video models share: their spec and params, loading, and the networks to count."""

    denoiser: Denoiser
    codec: VaeCodec

    def __init__(self, spec: ModelSpec, params: Params):
        self.spec = spec
        self.params = params

    @classmethod
    @abstractmethod
    def load(cls, spec: ModelSpec, params: Params, sources: dict[str, str], runtime: Runtime) -> Model:
        """Build the model from ``sources`` (weights role -> hub id or directory)."""

    def configure(self, inputs: BridgeInputs) -> None:
        """Called once per run, before the bridge, with the run's prepared inputs (frames, size).

        A model whose sampling depends on them keeps what it needs (FLUX's and Wan's schedules
        shift with the number of latent tokens). Nothing by default.
        """

    def unets(self) -> list[torch.nn.Module]:
        return [self.denoiser.unet]

    def conditioning_networks(self) -> dict[str, torch.nn.Module]:
        """Networks besides the UNets that condition them (a ControlNet, a T2I-Adapter), by name.

        ``run.json`` counts their forwards apart, under ``ROLE.NAME``: they cost compute that a
        count of UNet evaluations alone would hide.
        """
        return {}

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        """Every network the model runs, grouped into what ``--offload model`` moves together, in the order
        a run uses them: text encoders, each UNet (the first with its conditioning networks), the VAE."""
        denoisers = [d for d in (self.denoiser, getattr(self, "inversion_denoiser", None)) if d is not None]
        units = {f"text_encoder{_suffix(i)}": [e] for i, e in enumerate(_unique([d.text_encoder for d in denoisers]))}
        for i, unet in enumerate(_unique(self.unets())):
            units[f"unet{_suffix(i)}"] = [unet, *self.conditioning_networks().values()] if i == 0 else [unet]
        units["vae"] = [self.codec.vae]
        return units


def _unique(modules: list[torch.nn.Module]) -> list[torch.nn.Module]:
    return list({id(m): m for m in modules}.values())


def _suffix(index: int) -> str:
    return "" if index == 0 else f"_{index + 1}"


class ImageModel(Model):
    """An IDM: a frame-wise denoiser with its own conditions, and SD1.5's plain UNet for image inversion.

    ``inversion_denoiser`` may be None when it needs weights of their own (``WeightsSpec.inversion_only``)
    and the run's bridge never inverts (``BridgeSpec.image_inversion``): they are then not loaded.
    """

    inversion_denoiser: Denoiser | None

    def prepare(self, sources: Sources) -> FrameInputs:
        """Per-frame inputs from the sources (control maps, source latents, masks); none by default."""
        return FrameInputs()

    def generate(self, inputs: BridgeInputs, generator: torch.Generator, advance=None) -> torch.Tensor:
        """Frame-wise generation, all frames batched: by default from noise, with the model's conditions.

        Models that start elsewhere (SDEdit from the source, inversion for Prompt-to-Prompt) override it.
        """
        cond = self.denoiser.condition(inputs.image_prompt, inputs.negative_prompt, **inputs.frame_inputs.extras)
        noise = sampling.initial_noise(self.denoiser, inputs.latent_shape(self.codec), generator)
        return sampling.sample(self.denoiser, noise, cond, steps=inputs.steps, guidance=inputs.guidance, advance=advance, generator=generator)


class VideoModel(Model):
    """A VDM: a denoiser over whole clips.

    ``condition_frames``: the control maps a VDM that follows controls itself (VACE) made in :meth:`configure`,
    uint8 (F, H, W, 3); a run without an IDM writes them to condition.mp4 and the grid. None otherwise.
    """

    condition_frames = None

    def condition_on_frames(self, frames) -> None:
        """Frames a bridge generated (uint8 (F, H, W, 3), e.g. the IDM's) that a VDM able to follow given frames
        takes as its condition (Wan 2.2 TI2V: the first one, where its params ask for it). Nothing by default."""

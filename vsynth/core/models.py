"""What every model provides to bridges: denoisers over latent videos, a VAE codec, inputs.

Models are adapters over diffusers components; bridges are algorithms over these interfaces
and never import diffusers. Latent videos are always (B, C, F, H, W).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from vsynth.core.components import VaeCodec
from vsynth.core.specs import ModelSpec, Params

if TYPE_CHECKING:
    from vsynth.core.bridge import BridgeInputs


@dataclass
class Runtime:
    """Where and how models run."""

    device: torch.device
    dtype: torch.dtype


@dataclass
class Conditioning:
    """Opaque to bridges: what a denoiser needs besides the latents (prompt embeddings, per-frame inputs)."""

    text: torch.Tensor  # (1, L, D)
    negative: torch.Tensor | None = None  # (1, L, D), needed for guidance > 1
    extras: dict[str, Any] = field(default_factory=dict)


class Denoiser(ABC):
    """A UNet (and whatever conditions it) seen as ``eps = predict_noise(x_t, t, cond, guidance)``.

    ``frame_folded`` denoisers (image models) fold frames into the batch, so their initial noise
    is drawn per frame, (B*F, C, H, W), as the image pipelines draw it.
    """

    frame_folded: ClassVar[bool]

    def __init__(self, unet, scheduler, tokenizer, text_encoder):
        self.unet = unet
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def new_scheduler(self):
        """A fresh scheduler of the model's kind and config (schedulers keep per-run state)."""
        return type(self.scheduler).from_config(self.scheduler.config)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        from vsynth.core.components import encode_text

        return encode_text(self.tokenizer, self.text_encoder, [prompt]).to(self.dtype)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        negative = None if negative_prompt is None else self.encode_prompt(negative_prompt)
        return Conditioning(text=self.encode_prompt(prompt), negative=negative, extras=extras)

    @abstractmethod
    def predict_noise(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """Noise prediction for latents (B, C, F, H, W) at timestep ``t``; classifier-free guidance if guidance > 1."""


@dataclass
class Sources:
    """The input videos of a run, read at the run's size and frame count (what the user gave)."""

    video: np.ndarray | None = None  # uint8 (F, H, W, 3)
    condition: np.ndarray | None = None  # uint8 (F, H, W, 3): precomputed control maps (--condition-video)
    mask: np.ndarray | None = None  # uint8 (F, H, W): 255 where the frames are regenerated
    source_prompt: str | None = None  # what the source video shows (Prompt-to-Prompt)


@dataclass
class FrameInputs:
    """What an image model prepared from the sources."""

    extras: dict[str, Any] = field(default_factory=dict)  # passed to ``denoiser.condition``
    condition_frames: np.ndarray | None = None  # uint8 (F, H, W, 3) control maps or mask, written to condition.mp4


class Model(ABC):
    """What image and video models share: their spec and params, loading, and the UNets to count."""

    denoiser: Denoiser
    codec: VaeCodec

    def __init__(self, spec: ModelSpec, params: Params):
        self.spec = spec
        self.params = params

    @classmethod
    @abstractmethod
    def load(cls, spec: ModelSpec, params: Params, sources: dict[str, str], runtime: Runtime) -> Model:
        """Build the model from ``sources`` (weights role -> hub id or directory)."""

    def unets(self) -> list[torch.nn.Module]:
        return [self.denoiser.unet]


class ImageModel(Model):
    """An IDM: a frame-wise denoiser with its own conditions, and SD1.5's plain UNet for image inversion."""

    inversion_denoiser: Denoiser

    def prepare(self, sources: Sources) -> FrameInputs:
        """Per-frame inputs from the sources (control maps, source latents, masks); none by default."""
        return FrameInputs()

    def generate(self, inputs: BridgeInputs, generator: torch.Generator, advance=None) -> torch.Tensor:
        """Frame-wise generation, all frames batched: by default from noise, with the model's conditions.

        Models that start elsewhere (SDEdit from the source, inversion for Prompt-to-Prompt) override it.
        """
        from vsynth.core import sampling

        cond = self.denoiser.condition(inputs.image_prompt, inputs.negative_prompt, **inputs.frame_inputs.extras)
        noise = sampling.initial_noise(self.denoiser, inputs.latent_shape(self.codec), generator)
        return sampling.sample(self.denoiser, noise, cond, steps=inputs.steps, guidance=inputs.guidance, advance=advance)


class VideoModel(Model):
    """A VDM: a denoiser over whole clips."""


class EvalCounter:
    """Counts UNet forward calls and frame evaluations per model role, through forward hooks.

    A frame evaluation is one frame through one UNet call, so classifier-free guidance counts
    twice and a video UNet call on F frames counts F.
    """

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.frame_evals: Counter[str] = Counter()
        self._handles = []

    def attach(self, module: torch.nn.Module, role: str) -> None:
        def hook(_module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            self.calls[role] += 1
            self.frame_evals[role] += sample.shape[0] * (sample.shape[2] if sample.ndim == 5 else 1)

        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

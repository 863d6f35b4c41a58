"""The denoiser interface: a UNet (and whatever conditions it) seen as one noise-prediction function.

Both image and video models provide one; every loop in :mod:`vsynth.core.diffusion.sampling` and
every bridge works through it alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from vsynth.core.diffusion.components import encode_text
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.offload import execution_device


class Denoiser(ABC):
    """A UNet (and whatever conditions it) seen as ``eps = predict_noise(x_t, t, cond, guidance)``.

    ``frame_folded`` denoisers (image models) fold frames into the batch, so their initial noise
    is drawn per frame, (B*F, C, H, W), as the image pipelines draw it.

    What a bridge may rely on, for every denoiser (built-in, a plugin's, or a wrapper):

    - ``predict_noise`` returns eps of the latents' shape (B, C, F, H, W) and draws no randomness:
      all of a run's randomness comes from the generator, through :meth:`initial_noise`;
    - ``condition(...)`` is computed once and reused for every step and every call;
    - ``unet`` is the module every prediction runs through, possibly several times per
      ``predict_noise`` (a batch chunk, a window), always at that call's timestep: evaluation
      counters and attention control (:mod:`vsynth.core.diffusion.attention`) attach to it and see
      every call; that is the one reason for a bridge to touch it;
    - ``alphas_cumprod`` is the training schedule, and :meth:`new_scheduler` a fresh scheduler of
      the model's kind and config, for the bridge to set its timesteps on.
    """

    frame_folded: ClassVar[bool]

    def __init__(self, unet, scheduler, tokenizer, text_encoder):
        self.unet = unet
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def device(self) -> torch.device:
        """Where the UNet computes (with ``--offload``, not where its weights wait)."""
        return execution_device(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def new_scheduler(self):
        """A fresh scheduler of the model's kind and config (schedulers keep per-run state)."""
        return type(self.scheduler).from_config(self.scheduler.config)

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise of ``shape`` (B, C, F, H, W), drawn as the model's own pipeline draws it.

        Image pipelines draw (B*F, C, H, W) for a batch of frames, video pipelines (B, C, F, H, W);
        drawing the same way keeps vsynth's frames equal to the diffusers pipelines' for one seed.
        A denoiser that owns its noise (windows with re-scheduled noise) overrides this.
        """
        b, c, f, h, w = shape
        if self.frame_folded:
            noise = torch.randn((b * f, c, h, w), generator=generator, device=generator.device, dtype=torch.float32)
            noise = noise.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
        else:
            noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return noise.to(self.device, self.dtype)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return encode_text(self.tokenizer, self.text_encoder, [prompt]).to(self.dtype)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        negative = None if negative_prompt is None else self.encode_prompt(negative_prompt)
        return Conditioning(text=self.encode_prompt(prompt), negative=negative, extras=extras)

    @abstractmethod
    def predict_noise(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """Noise prediction for latents (B, C, F, H, W) at timestep ``t``; classifier-free guidance if guidance > 1."""


class DelegatingDenoiser(Denoiser):
    """A denoiser that wraps another and passes everything through: a subclass overrides only what it
    changes (its noise, its predictions over windows, ...).

    It shares the wrapped denoiser's UNet, scheduler, tokenizer and text encoder, so evaluation
    counters and attention processors on the UNet see every call the wrapper makes.
    """

    def __init__(self, inner: Denoiser):
        super().__init__(inner.unet, inner.scheduler, inner.tokenizer, inner.text_encoder)
        self.inner = inner

    @property
    def frame_folded(self) -> bool:
        return self.inner.frame_folded

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.inner.alphas_cumprod

    def new_scheduler(self):
        return self.inner.new_scheduler()

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        return self.inner.initial_noise(shape, generator)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self.inner.encode_prompt(prompt)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        return self.inner.condition(prompt, negative_prompt, **extras)

    def predict_noise(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        return self.inner.predict_noise(latents, t, cond, guidance)

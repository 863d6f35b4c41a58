"""ZeroScope that owns its initial noise: PYoCo's mixed noise (Ge et al., ICCV 2023).

Every frame's noise is a shared part plus its own, ``sqrt(s) * shared + sqrt(1 - s) * own``: still
unit Gaussian per frame, but correlated by ``s`` across frames, so that frames start alike and the
clip flickers less. ``shared_noise=0`` draws exactly ZeroScope's noise.

Only the noise changes, so the denoiser is a :class:`DelegatingDenoiser` overriding
``initial_noise`` alone; every bridge, and the windows of long clips, draw through it.
"""

from __future__ import annotations

import torch

from vsynth.core.diffusion.denoiser import DelegatingDenoiser, Denoiser
from vsynth.plugins.vdm.unet3d import UNet3DVideoModel


class MixedNoiseDenoiser(DelegatingDenoiser):
    def __init__(self, inner: Denoiser, shared: float):
        super().__init__(inner)
        self.shared = shared

    def initial_noise(self, shape, generator: torch.Generator) -> torch.Tensor:
        b, c, _, h, w = shape
        own = self.inner.initial_noise(shape, generator)  # first, so that shared=0 is ZeroScope's noise
        shared = self.inner.initial_noise((b, c, 1, h, w), generator)
        return self.shared**0.5 * shared + (1 - self.shared) ** 0.5 * own


class MixedNoiseZeroScope(UNet3DVideoModel):
    @classmethod
    def load(cls, spec, params, sources, runtime):
        model = super().load(spec, params, sources, runtime)
        model.denoiser = MixedNoiseDenoiser(model.denoiser, params.shared_noise)
        return model

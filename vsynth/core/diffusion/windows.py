"""Windowed denoising: any video model over a clip of any length.

A VDM is trained on clips of a few seconds (ZeroScope 24 frames, ModelScope and AnimateDiff 16),
and a motion adapter cannot take more than its positional window at all. :class:`WindowedDenoiser`
wraps a VDM's denoiser so that every noise prediction runs over overlapping temporal windows of
the model's length and blends the overlaps (MultiDiffusion-style averaging, AnimateDiff's context
windows): the UNet never sees more than one window, and memory stays flat in the frame count.
Bridges need no change: they see one denoiser over the whole clip. A clip no longer than the
window is one window, and the wrapper then calls the model exactly as before.

Independent noise per window drifts apart; ``noise="freenoise"`` re-schedules the initial noise as
FreeNoise does (Qiu et al., ICLR 2024): the frames after the first window repeat, shuffled, the
noise of the frames one window earlier, so every window starts from nearly the same noise frames.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from vsynth.core.diffusion.denoiser import DelegatingDenoiser, Denoiser
from vsynth.core.diffusion.inputs import Conditioning

Blend = Literal["uniform", "tapered"]
NoiseSchedule = Literal["independent", "freenoise"]


def spans(frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) of the windows over frames 0..frames-1: the whole clip if it fits in one window,
    else as few full windows as let neighbours share at least ``overlap`` frames, spread evenly from
    the first frame to the last (so no window is short and no overlap much larger than the others)."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap {overlap} must be at least 0 and below the window {window}")
    if frames <= window:
        return [(0, frames)]
    count = math.ceil((frames - overlap) / (window - overlap))
    starts = [round(i * (frames - window) / (count - 1)) for i in range(count)]
    return [(start, start + window) for start in starts]


def blend_weights(length: int, blend: Blend) -> torch.Tensor:
    """Per-frame weights of one window's prediction: ``uniform`` averages overlapping windows equally;
    ``tapered`` rises linearly to the window's centre and falls after (1, 2, ..., 2, 1), so a frame
    near a seam follows the window it sits deeper in."""
    if blend == "uniform":
        return torch.ones(length)
    position = torch.arange(length)
    return torch.minimum(position + 1, length - position).float()


class WindowedDenoiser(DelegatingDenoiser):
    """A VDM denoiser that predicts noise window by window and blends the overlaps.

    As every :class:`DelegatingDenoiser`, it shares the wrapped denoiser's UNet (so evaluation
    counters and attention processors see every window's call) and conditions as it does. Only
    text conditions are supported: they are the same for every window.
    """

    frame_folded = False

    def __init__(self, inner: Denoiser, window: int, overlap: int = 0, blend: Blend = "uniform", noise: NoiseSchedule = "independent"):
        if inner.frame_folded:
            raise ValueError("frame-folded (image) denoisers batch frames on their own; windows are for video denoisers")
        spans(window, window, overlap)  # validates the overlap
        super().__init__(inner)
        self.window, self.overlap, self.blend, self.noise = window, overlap, blend, noise

    def spans(self, frames: int) -> list[tuple[int, int]]:
        """The windows this denoiser runs over a clip of ``frames`` frames."""
        return spans(frames, self.window, self.overlap)

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        frames = latents.shape[2]
        windows = self.spans(frames)
        if len(windows) == 1:
            return self.inner.predict(latents, t, cond, guidance)
        total = torch.zeros(latents.shape, device=latents.device, dtype=torch.float32)
        weight = torch.zeros(frames, device=latents.device)
        for start, stop in windows:
            w = blend_weights(stop - start, self.blend).to(latents.device)
            eps = self.inner.predict(latents[:, :, start:stop], t, cond, guidance)
            total[:, :, start:stop] += eps.float() * w.view(1, 1, -1, 1, 1)
            weight[start:stop] += w
        return (total / weight.view(1, 1, -1, 1, 1)).to(latents.dtype)

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        """The wrapped model's noise; with ``freenoise`` beyond one window, FreeNoise's re-scheduling:
        the first window is drawn, then each following stretch of ``window - overlap`` frames repeats
        a random permutation of the stretch one window earlier (diffusers' FreeNoise does the same)."""
        b, c, frames, h, w = shape
        if self.noise == "independent" or frames <= self.window:
            return self.inner.initial_noise(shape, generator)
        noise = torch.empty(shape, device=self.device, dtype=self.dtype)
        noise[:, :, : self.window] = self.inner.initial_noise((b, c, self.window, h, w), generator)
        stride = self.window - self.overlap
        for start in range(self.window, frames, stride):
            source = torch.arange(start - self.window, start - self.window + stride)
            shuffled = source[torch.randperm(stride, generator=generator, device=generator.device).cpu()]
            count = min(stride, frames - start)
            noise[:, :, start : start + count] = noise[:, :, shuffled[:count].to(noise.device)]
        return noise


def window_spans(params, frames: int) -> list[tuple[int, int]]:
    """The windows a VDM with these params runs over ``frames`` frames (one, the whole clip, without a ``window``)."""
    window = getattr(params, "window", None)
    return [(0, frames)] if window is None else spans(frames, window, params.overlap)


def windowed(denoiser: Denoiser, params) -> Denoiser:
    """``denoiser`` in the windows a VDM's params ask for (``window``, ``overlap``, ``blend``, ``noise``
    of :class:`~vsynth.core.host.specs.VideoParams`); unchanged when they name no window."""
    window = getattr(params, "window", None)
    if window is None:
        return denoiser
    return WindowedDenoiser(denoiser, window, params.overlap, params.blend, params.noise)

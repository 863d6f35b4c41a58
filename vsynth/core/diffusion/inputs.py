"""The data that passes between the pipeline, models and bridges: where models run, what
conditions a denoiser, the run's sources, and the prepared inputs a bridge receives.

Plain data classes in a module of their own, so that models, sampling and bridges all import
them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from vsynth.core.diffusion.components import VaeCodec


@dataclass
class Runtime:
    """Where and how models run.

    ``device`` is where they compute, and where inputs go; with ``offload`` ("model" or
    "sequential") their weights live on the CPU (``home``) and hooks move them to ``device`` as
    they run (:mod:`vsynth.core.diffusion.offload`). Models load onto ``home``.
    """

    device: torch.device
    dtype: torch.dtype
    offload: str = "none"

    @property
    def home(self) -> torch.device:
        """Where weights are loaded and kept between uses."""
        return self.device if self.offload == "none" else torch.device("cpu")


@dataclass
class Conditioning:
    """Opaque to bridges: what a denoiser needs besides the latents (prompt embeddings, per-frame inputs)."""

    text: torch.Tensor  # (1, L, D)
    negative: torch.Tensor | None = None  # (1, L, D), needed for guidance > 1
    extras: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class BridgeInputs:
    """The prepared inputs of one run."""

    frames: int
    height: int  # pixels
    width: int
    steps: int  # the IDM's
    guidance: float
    vdm_steps: int
    vdm_guidance: float
    prompt: str  # the VDM's prompt
    image_prompt: str  # the IDM's prompt
    negative_prompt: str
    sources: Sources = field(default_factory=Sources)
    frame_inputs: FrameInputs = field(default_factory=FrameInputs)

    def latent_shape(self, codec: VaeCodec) -> tuple[int, int, int, int, int]:
        """(1, C, F', H/f, W/f): the latents the codec makes of the run's frames (F' = F unless it compresses time)."""
        return codec.latent_shape(self.frames, self.height, self.width)

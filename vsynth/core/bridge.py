"""The contract between the pipeline and a bridging strategy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch

from vsynth.core.components import VaeCodec
from vsynth.core.models import FrameInputs, ImageModel, Sources, VideoModel
from vsynth.core.progress import Stages
from vsynth.core.specs import BridgeSpec, Params


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
        """(1, C, F, H/f, W/f) for the codec's latent channels and down-sampling factor f."""
        channels = codec.vae.config.latent_channels
        return (1, channels, self.frames, self.height // codec.factor, self.width // codec.factor)


@dataclass
class BridgeResult:
    latents: torch.Tensor  # the final latent video (1, C, F, H, W), before decoding
    codec: VaeCodec  # the VAE that decodes ``latents``
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. {"idm_frames": uint8 (F, H, W, 3)}


class Bridge(ABC):
    """A bridging strategy: composes an IDM and a VDM into one latent video."""

    def __init__(self, spec: BridgeSpec, params: Params):
        self.spec = spec
        self.params = params

    @abstractmethod
    def run(
        self, idm: ImageModel | None, vdm: VideoModel, inputs: BridgeInputs, generator: torch.Generator, stages: Stages
    ) -> BridgeResult:
        """Return the final latent video; time and report each stage through ``stages``.

        ``idm`` is None exactly when the spec says ``needs_idm=False``.
        """

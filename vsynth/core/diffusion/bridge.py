"""The contract between the pipeline and a bridging strategy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch

from vsynth.core.diffusion.components import VaeCodec
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.models import ImageModel, VideoModel
from vsynth.core.host.specs import BridgeSpec, Params
from vsynth.core.run.progress import Stages




@dataclass
class BridgeResult:
    latents: torch.Tensor  # the final latent video (1, C, F, H, W), before decoding
    codec: VaeCodec  # the VAE that decodes ``latents``
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. {"idm_frames": uint8 (F, H, W, 3)}
    record: dict = field(default_factory=dict)  # what the bridge resolved at run time, for run.json's bridge.resolved


class Bridge(ABC):
    """A bridging strategy: composes an IDM and a VDM into one latent video."""

    def __init__(self, spec: BridgeSpec, params: Params):
        self.spec = spec
        self.params = params

    @abstractmethod
    def run(
        self, idm: ImageModel | None, vdm: VideoModel | None, inputs: BridgeInputs, generator: torch.Generator, stages: Stages
    ) -> BridgeResult:
        """Return the final latent video; time and report each stage through ``stages``.

        ``idm`` is None exactly when the spec says ``needs_idm=False`` (or, with ``accepts_idm=True``, when the
        run gives none); ``vdm`` exactly when it says ``needs_vdm=False``.
        """

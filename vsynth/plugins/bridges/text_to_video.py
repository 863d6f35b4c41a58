"""No bridge: the video model alone, from noise and the prompt."""

from __future__ import annotations

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.models import VideoModel
from vsynth.core.run.progress import Stages


def text_to_video(vdm: VideoModel, inputs: BridgeInputs, generator: torch.Generator, stages: Stages) -> torch.Tensor:
    """The VDM's clean latent video for the prompt, sampled from noise with its own steps and guidance."""
    with stages.stage("text-to-video", total=inputs.vdm_steps) as advance:
        cond = vdm.denoiser.condition(inputs.prompt, inputs.negative_prompt)
        noise = sampling.initial_noise(vdm.denoiser, inputs.latent_shape(vdm.codec), generator)
        return sampling.sample(vdm.denoiser, noise, cond, steps=inputs.vdm_steps, guidance=inputs.vdm_guidance, advance=advance, generator=generator)


class TextToVideo(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        return BridgeResult(latents=text_to_video(vdm, inputs, generator, stages), codec=vdm.codec)

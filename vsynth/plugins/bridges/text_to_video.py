"""No bridge: the video model alone, from noise and the prompt."""

from __future__ import annotations

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult


class TextToVideo(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        with stages.stage("text-to-video", total=inputs.vdm_steps) as advance:
            cond = vdm.denoiser.condition(inputs.prompt, inputs.negative_prompt)
            noise = sampling.initial_noise(vdm.denoiser, inputs.latent_shape(vdm.codec), generator)
            z = sampling.sample(vdm.denoiser, noise, cond, steps=inputs.vdm_steps, guidance=inputs.vdm_guidance, advance=advance)
        return BridgeResult(latents=z, codec=vdm.codec)

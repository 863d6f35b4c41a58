"""SDEdit bridge: frame-wise IDM generation, then the VDM denoises the noised IDM latents.

1. The IDM generates every frame (``idm.generate``: from noise, with its conditions).
2. The clean IDM latents are noised to the level of the VDM's step at ``strength`` of its
   schedule (in the VDM's own noise process), as diffusers' img2img pipelines start.
3. The VDM denoises the remaining ``int(strength * steps)`` steps over the whole clip.

Cheaper than Mixed Inversion (no inversion at all); ``strength`` trades the IDM's detail for the
VDM's temporal coherence. Like Mixed Inversion it uses the IDM's VAE throughout, so the VDM must
share SD's latent space (ZeroScope, ModelScope and AnimateDiff do).
"""

from __future__ import annotations

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult


class SDEdit(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        with stages.stage("frame-wise generation", total=inputs.steps) as advance:
            z = idm.generate(inputs, generator, advance)
        with stages.stage("decoding IDM frames", total=inputs.frames) as advance:
            idm_frames = idm.codec.decode(z, advance)

        denoiser = vdm.denoiser
        z = z.to(denoiser.dtype)
        schedule = sampling.Schedule(denoiser, inputs.vdm_steps)
        start = schedule.sdedit_start(self.params.strength)
        if start < schedule.steps:
            with stages.stage("temporal smoothing", total=schedule.steps - start) as advance:
                noise = sampling.initial_noise(denoiser, tuple(z.shape), generator)
                z = sampling.renoise(denoiser, z, noise, schedule.level(start))
                cond = denoiser.condition(inputs.prompt, inputs.negative_prompt)
                z = sampling.denoise(schedule, z, cond, start, guidance=inputs.vdm_guidance, advance=advance, generator=generator)
        return BridgeResult(latents=z, codec=idm.codec, intermediates={"idm_frames": idm_frames})

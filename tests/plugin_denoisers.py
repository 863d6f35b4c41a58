"""A v-prediction denoiser and a flow denoiser, written as a plugin would write them (docs/plugins.md).

Each declares its process and returns what its network predicts; the core does the rest (the clean
latent, the noise, the levels, any solver of the process's family). Tested in tests/test_plugin_denoisers.py.
"""

import torch

from vsynth.core.diffusion import processes
from vsynth.core.diffusion.denoiser import Denoiser


class VPredictionDenoiser(Denoiser):
    """An image UNet (diffusers' UNet2DConditionModel) that predicts v over a VP schedule, run on every frame."""

    frame_folded = True  # an image model: its noise is drawn per frame
    declared_process = processes.VP_V  # without it, read from the scheduler's prediction_type

    @torch.no_grad()
    def predict(self, latents, t, cond, guidance):
        b, c, f, h, w = latents.shape
        frames = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B*F, C, H, W)
        text = cond.text.expand(b * f, -1, -1)
        if guidance > 1.0:
            frames, text = torch.cat([frames, frames]), torch.cat([cond.negative.expand(b * f, -1, -1), text])
        v = self.unet(frames, t, encoder_hidden_states=text, return_dict=False)[0]
        if guidance > 1.0:
            uncond, conditioned = v.chunk(2)
            v = uncond + guidance * (conditioned - uncond)
        return v.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


class FlowDenoiser(Denoiser):
    """A video transformer trained for rectified flow (Wan-style: latents (B, C, F, H, W), one timestep per
    clip), sampled with FlowMatchEulerDiscreteScheduler or any flow solver; it predicts noise - x0."""

    frame_folded = False  # a video model: one noise tensor for the clip
    declared_process = processes.FLOW

    @torch.no_grad()
    def predict(self, latents, t, cond, guidance):
        timestep = torch.full((latents.shape[0],), float(t), device=latents.device)  # t = 1000 s

        def velocity(text):
            text = text.expand(latents.shape[0], -1, -1)
            return self.unet(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]

        conditioned = velocity(cond.text)
        if guidance <= 1.0:
            return conditioned
        uncond = velocity(cond.negative)
        return uncond + guidance * (conditioned - uncond)

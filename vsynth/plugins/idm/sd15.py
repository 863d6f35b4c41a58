"""Stable Diffusion 1.5 or any finetune: text-to-image, or SDEdit (image-to-image) of the source frames."""

from __future__ import annotations

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.models import ImageModel
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser


class SD15Model(ImageModel):
    @classmethod
    def load(cls, spec, params, sources, runtime):
        sd = SD15.load(sources["base"], runtime)
        model = cls(spec, params)
        model.denoiser = FrameDenoiser(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size)
        model.inversion_denoiser = model.denoiser
        model.codec = sd.codec()
        return model

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """From noise without a source; with one, as StableDiffusionImg2ImgPipeline: the source latents are
        sampled, noised to ``strength`` of the schedule, and denoised from there."""
        source = inputs.sources.video
        if source is None:
            return super().generate(inputs, generator, advance)
        denoiser = self.denoiser
        schedule = sampling.Schedule(denoiser, inputs.steps)
        start = schedule.sdedit_start(self.params.strength)
        if start == schedule.steps:
            raise InvalidParamsError(f"strength {self.params.strength} leaves none of the {inputs.steps} steps: raise -o strength or --steps")
        latents = self.codec.encode(source, generator)
        noise = sampling.initial_noise(denoiser, tuple(latents.shape), generator)
        cond = denoiser.condition(inputs.image_prompt, inputs.negative_prompt)
        z = sampling.renoise(denoiser, latents, noise, schedule.level(start))
        return sampling.denoise(schedule, z, cond, start, guidance=inputs.guidance, advance=advance, generator=generator)

"""SD1.5 inpainting (and outpainting, which is inpainting with a border mask), all frames batched.

Every frame goes through the 9-channel inpainting UNet exactly as ``StableDiffusionInpaintPipeline``
at strength 1 runs it: the UNet sees [latents, mask, masked-image latents], the mask binarized and
resized to the latent grid, the masked image being the frame with the regenerated part set to 0
(mid-gray), encoded by sampling the VAE's latent distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser, unfold

MASKED_GRAY = 128  # what the masked part of a frame looks like to the UNet (0 in [-1, 1]), shown in condition.mp4


class InpaintDenoiser(FrameDenoiser):
    """The inpainting UNet: per frame, the latents with the mask and the masked image's latents as extra channels."""

    def __init__(self, sd: SD15, batch_size: int | None):
        super().__init__(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, batch_size)
        self.codec = sd.codec()

    def condition(self, prompt, negative_prompt=None, *, mask, masked_pixels, generator=None) -> Conditioning:
        """Encodes the masked frames: sampled with ``generator`` as the pipeline does, else the distribution's mean.

        ``mask`` (F, 1, h, w) is binary on the latent grid, ``masked_pixels`` (F, 3, H, W) in [-1, 1].
        """
        masked = self.codec.encode_pixels(masked_pixels, generator)
        return super().condition(prompt, negative_prompt, mask=mask, masked_image_latents=masked)

    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """Concatenates [latents, mask, masked image latents] on channels; ``FrameDenoiser`` folds, chunks and guides."""
        extra = torch.cat([cond.extras["mask"], cond.extras["masked_image_latents"]], dim=1)  # (F, 5, h, w)
        extra = unfold(extra, 1).expand(latents.shape[0], -1, -1, -1, -1).to(latents.dtype)
        return super().predict(torch.cat([latents, extra], dim=1), t, cond, guidance)


class Inpaint(ImageModel):
    """Regenerates the white part of the mask in every frame; outpainting masks come from ``--outpaint``."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        inpaint = SD15.load(sources["inpaint"], runtime)
        model = cls(spec, params)
        model.runtime = runtime
        model.denoiser = InpaintDenoiser(inpaint, params.batch_size)
        model.inversion_denoiser = None  # loaded only for a bridge that inverts: sources then hold a base
        if "base" in sources:
            base = SD15.load(sources["base"], runtime)
            model.inversion_denoiser = FrameDenoiser(base.unet, base.scheduler, base.tokenizer, base.text_encoder, params.batch_size)
        model.codec = model.denoiser.codec
        return model

    def unets(self) -> list[torch.nn.Module]:
        return [d.unet for d in (self.denoiser, self.inversion_denoiser) if d is not None]

    def prepare(self, sources: Sources) -> FrameInputs:
        """The binarized mask on the latent grid and the masked frames, preprocessed as the pipeline's image and
        mask processors do; condition.mp4 shows the masked frames."""
        frames = torch.from_numpy(np.ascontiguousarray(sources.video)).permute(0, 3, 1, 2).float()
        pixels = 2.0 * (frames / 255.0) - 1.0  # (F, 3, H, W), VaeImageProcessor's normalization
        keep = torch.from_numpy(sources.mask / 255.0 < 0.5)[:, None]  # (F, 1, H, W): True where the frame is kept
        mask = (~keep).float()
        h, w = frames.shape[2] // self.codec.factor, frames.shape[3] // self.codec.factor
        latent_mask = torch.nn.functional.interpolate(mask, size=(h, w))  # nearest, as the pipeline resizes it
        device, dtype = self.runtime.device, self.runtime.dtype
        shown = np.where(keep[:, 0, :, :, None].numpy(), sources.video, np.uint8(MASKED_GRAY))
        return FrameInputs(
            extras={"mask": latent_mask.to(device, dtype), "masked_pixels": (pixels * keep).to(device, dtype)},
            condition_frames=shown,
        )

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """As the pipeline at strength 1 consumes the generator: the initial noise first, then the masked-image latents."""
        noise = sampling.initial_noise(self.denoiser, inputs.latent_shape(self.codec), generator)
        extras = inputs.frame_inputs.extras
        cond = self.denoiser.condition(inputs.image_prompt, inputs.negative_prompt, generator=generator, **extras)
        return sampling.sample(self.denoiser, noise, cond, steps=inputs.steps, guidance=inputs.guidance, advance=advance)

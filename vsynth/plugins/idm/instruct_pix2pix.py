"""InstructPix2Pix: instruction editing of every source frame, with text and image guidance."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.components import VaeCodec
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser, fold, unfold


class Pix2PixDenoiser(FrameDenoiser):
    """An 8-channel UNet fed [latents, source image latents]; guidance over (text, image, neither) as the pipeline does.

    ``guidance`` is the text scale; ``image_guidance`` the image scale. Guidance applies when
    guidance > 1 and image_guidance >= 1 (the pipeline's rule); otherwise one plain call.
    """

    def __init__(self, sd: SD15, image_guidance: float, batch_size: int | None):
        super().__init__(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, batch_size)
        self.image_guidance = image_guidance

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        flat = fold(latents)
        images = cond.extras["image_latents"]  # (F, C, h, w), unscaled
        guided = guidance > 1.0 and self.image_guidance >= 1.0
        size = self.batch_size or flat.shape[0]
        out = []
        for start in range(0, flat.shape[0], size):
            frames = slice(start, min(start + size, flat.shape[0]))
            x, image = flat[frames], images[frames]
            n = x.shape[0]
            text = cond.text.expand(n, -1, -1)
            if guided:
                negative = cond.negative.expand(n, -1, -1)
                x = torch.cat([x, x, x])
                text = torch.cat([text, negative, negative])
                image = torch.cat([image, image, torch.zeros_like(image)])
            eps = self.unet(torch.cat([x, image], dim=1), t, encoder_hidden_states=text, return_dict=False)[0]
            if guided:
                with_text, with_image, neither = eps.chunk(3)
                eps = neither + guidance * (with_text - with_image) + self.image_guidance * (with_image - neither)
            out.append(eps)
        return unfold(torch.cat(out), latents.shape[0])


class InstructPix2Pix(ImageModel):
    @classmethod
    def load(cls, spec, params, sources, runtime):
        pix2pix = SD15.load(sources["pix2pix"], runtime)
        model = cls(spec, params)
        model.denoiser = Pix2PixDenoiser(pix2pix, params.image_guidance, params.batch_size)
        model.inversion_denoiser = None  # loaded only for a bridge that inverts: sources then hold a base
        if "base" in sources:
            base = SD15.load(sources["base"], runtime)
            model.inversion_denoiser = FrameDenoiser(base.unet, base.scheduler, base.tokenizer, base.text_encoder, params.batch_size)
        model.codec = VaeCodec(pix2pix.vae)
        return model

    def unets(self) -> list[torch.nn.Module]:
        return [d.unet for d in (self.denoiser, self.inversion_denoiser) if d is not None]

    def prepare(self, sources: Sources) -> FrameInputs:
        latents = self.codec.encode(sources.video, scaled=False)  # the pipeline's argmax latents, unscaled
        return FrameInputs(extras={"image_latents": latents[0].permute(1, 0, 2, 3)})

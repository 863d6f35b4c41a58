"""Text-to-video models on diffusers' UNet3DConditionModel (ZeroScope, ModelScope), with vsynth's own loop."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.components import VaeCodec, load
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import VideoModel


class ClipDenoiser(Denoiser):
    """A video UNet over whole clips (B, C, F, H, W), with classifier-free guidance as the video pipelines do it.

    UNet3DConditionModel takes text embeddings (B, L, D) and repeats them over frames inside;
    subclasses whose UNet wants another layout override :meth:`frame_embeddings`.
    """

    frame_folded = False

    def frame_embeddings(self, embeddings: torch.Tensor, frames: int) -> torch.Tensor:
        return embeddings

    def unet_kwargs(self, latents: torch.Tensor, cond: Conditioning, cfg: bool) -> dict:
        """Extra UNet arguments for the batch ``latents`` (doubled when ``cfg``): AnimateDiff-SDXL's added conditions."""
        return {}

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        b, frames = latents.shape[0], latents.shape[2]
        embeddings = cond.text.expand(b, -1, -1)
        cfg = guidance > 1.0
        if cfg:
            latents = torch.cat([latents, latents])
            embeddings = torch.cat([cond.negative.expand(b, -1, -1), embeddings])
        kwargs = self.unet_kwargs(latents, cond, cfg)
        eps = self.unet(latents, t, encoder_hidden_states=self.frame_embeddings(embeddings, frames), return_dict=False, **kwargs)[0]
        if cfg:
            uncond, text = eps.chunk(2)
            eps = uncond + guidance * (text - uncond)
        return eps


class UNet3DVideoModel(VideoModel):
    """ZeroScope, ModelScope and other TextToVideoSD-layout folders: unet, vae, text_encoder, tokenizer, scheduler."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        source, what, kw = sources["vdm"], spec.name, {"torch_dtype": runtime.dtype}
        model = cls(spec, params)
        model.denoiser = ClipDenoiser(
            unet=load(UNet3DConditionModel, source, what=what, subfolder="unet", **kw).to(runtime.home),
            scheduler=load(DDIMScheduler, source, what=what, subfolder="scheduler"),
            tokenizer=load(CLIPTokenizer, source, what=what, subfolder="tokenizer"),
            text_encoder=load(CLIPTextModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
        )
        model.codec = VaeCodec(load(AutoencoderKL, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home), params.decode_batch_size)
        return model

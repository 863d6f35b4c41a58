"""SD1.5 components and the frame-folded denoiser every SD1.5-based image model builds on."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vsynth.core.diffusion.components import TENSORS, VaeCodec, load
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning, Runtime
from vsynth.core.diffusion.schedules import SD15_DDIM


# SD1.5's DDIM (REFERENCE.md), set explicitly: a repo may ship another scheduler (instruct-pix2pix
# ships EulerAncestral) or a finetune's minimal config, and DDIMScheduler.from_config would fill
# every missing key with DDIM's own defaults (clip_sample=True, set_alpha_to_one=True, steps_offset=0).
def sd15_scheduler():
    """A DDIMScheduler with SD1.5's values, whatever scheduler the weights' repo ships."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD15_DDIM)


@dataclass
class SD15:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object

    @classmethod
    def load(cls, source: str, runtime: Runtime) -> SD15:
        """The parts of a StableDiffusionPipeline folder, with SD1.5's DDIM as BIVDiff and EVS sample with it
        (the folder's own scheduler config is not read: see :data:`SD15_DDIM`). Every model on the same
        files and dtype holds the same weight tensors, each in modules of its own."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        what = "SD1.5 base"
        kw = {"torch_dtype": runtime.dtype}
        return cls(
            unet=load(UNet2DConditionModel, source, what=what, share=TENSORS, subfolder="unet", **kw).to(runtime.home),
            vae=load(AutoencoderKL, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home),
            text_encoder=load(CLIPTextModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            tokenizer=load(CLIPTokenizer, source, what=what, subfolder="tokenizer"),
            scheduler=sd15_scheduler(),
        )

    def codec(self) -> VaeCodec:
        return VaeCodec(self.vae)


def fold(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W), frame-major within each video."""
    b, c, f, h, w = latents.shape
    return latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*F, C, H, W) -> (B, C, F, H, W)."""
    bf, c, h, w = frames.shape
    return frames.reshape(batch, bf // batch, c, h, w).permute(0, 2, 1, 3, 4)


class FrameDenoiser(Denoiser):
    """A 2D UNet applied to every frame, ``batch_size`` frames per call, as StableDiffusionPipeline does.

    Subclasses add per-frame conditions through :meth:`unet_kwargs`.
    """

    frame_folded = True

    def __init__(self, unet, scheduler, tokenizer, text_encoder, batch_size: int | None = None):
        super().__init__(unet, scheduler, tokenizer, text_encoder)
        self.batch_size = batch_size

    def unet_kwargs(self, x: torch.Tensor, t, embeddings: torch.Tensor, frames: slice, cond: Conditioning, cfg: bool) -> dict:
        """Extra UNet arguments for the frames ``frames`` of the batch ``x`` (doubled when ``cfg``)."""
        return {}

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        flat = fold(latents)
        cfg = guidance > 1.0
        size = self.batch_size or flat.shape[0]
        out = []
        for start in range(0, flat.shape[0], size):
            frames = slice(start, min(start + size, flat.shape[0]))
            x = flat[frames]
            n = x.shape[0]
            embeddings = cond.text.expand(n, -1, -1)
            if cfg:
                x = torch.cat([x, x])
                embeddings = torch.cat([cond.negative.expand(n, -1, -1), embeddings])
            kwargs = self.unet_kwargs(x, t, embeddings, frames, cond, cfg)
            eps = self.unet(x, t, encoder_hidden_states=embeddings, return_dict=False, **kwargs)[0]
            if cfg:
                uncond, text = eps.chunk(2)
                eps = uncond + guidance * (text - uncond)
            out.append(eps)
        return unfold(torch.cat(out), latents.shape[0])

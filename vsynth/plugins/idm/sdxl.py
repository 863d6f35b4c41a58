"""Stable Diffusion XL image models: SDXL itself (text-to-image, or SDEdit of the source frames) and
diffusers' SDXL ControlNets, frame by frame as StableDiffusionXLPipeline and
StableDiffusionXLControlNetPipeline run them.

SDXL differs from SD1.5 in what conditions its UNet: two CLIP text encoders whose penultimate
hidden states are concatenated (768 + 1280 = 2048 wide), the second one's pooled and projected
embedding, and size conditioning (``add_time_ids``: original size, crop top-left, target size),
both passed as ``added_cond_kwargs``. Its VAE has the SD architecture but its own weights and
scaling (0.13025): its latents are not SD1.5's, so bridges transcode them through pixels for an
SD-space VDM (the spec's latent space says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vsynth.core.diffusion.components import TENSORS, VaeCodec, load
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Runtime, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.core.diffusion.schedules import SDXL_EULER
from vsynth.plugins.idm.detectors import ControlMaps
from vsynth.plugins.idm.sd15 import SD15Model
from vsynth.plugins.idm.stable_diffusion import FrameDenoiser


def sdxl_scheduler():
    """SDXL base's EulerDiscreteScheduler, whatever scheduler the weights' folder ships (as SD15 does for DDIM)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(SDXL_EULER)


def _zeros_for_empty_prompt(source: str) -> bool:
    """The pipeline's ``force_zeros_for_empty_prompt`` (model_index.json; true for SDXL base), true where unreadable."""
    from vsynth.core.diffusion.weights import cached_snapshot

    folder = Path(source) if Path(source).is_dir() else cached_snapshot(source)
    if folder is None:
        return True
    try:
        return bool(json.loads((folder / "model_index.json").read_text()).get("force_zeros_for_empty_prompt", True))
    except (OSError, ValueError):
        return True


@dataclass
class SDXL:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module  # CLIP ViT-L text: hidden states only
    text_encoder_2: torch.nn.Module  # OpenCLIP bigG text with projection: hidden states and the pooled embedding
    tokenizer: object
    tokenizer_2: object
    scheduler: object
    zeros_for_empty_prompt: bool

    @classmethod
    def load(cls, source: str, runtime: Runtime) -> SDXL:
        """The parts of a StableDiffusionXLPipeline folder, shared as SD15.load shares SD1.5's (the UNet by
        tensor, the VAE and text encoders whole), with SDXL base's Euler scheduler."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        what = "SDXL base"
        kw = {"torch_dtype": runtime.dtype}
        return cls(
            unet=load(UNet2DConditionModel, source, what=what, share=TENSORS, subfolder="unet", **kw).to(runtime.home),
            vae=load(AutoencoderKL, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home),
            text_encoder=load(CLIPTextModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            text_encoder_2=load(CLIPTextModelWithProjection, source, what=what, share=True, subfolder="text_encoder_2", **kw).to(
                runtime.home
            ),
            tokenizer=load(CLIPTokenizer, source, what=what, subfolder="tokenizer"),
            tokenizer_2=load(CLIPTokenizer, source, what=what, subfolder="tokenizer_2"),
            scheduler=sdxl_scheduler(),
            zeros_for_empty_prompt=_zeros_for_empty_prompt(source),
        )

    def codec(self) -> VaeCodec:
        return VaeCodec(self.vae)


class SDXLConditions:
    """What conditions an SDXL UNet, for a denoiser over it (frame by frame, or AnimateDiff-SDXL's motion UNet).

    ``condition`` holds both prompts' embeddings (1, 77, 2048) and pooled embeddings (1, 1280), the
    negative ones zero where the negative prompt is empty and the pipeline forces zeros for it (SDXL
    base does: its pipeline called without ``negative_prompt`` gives the same frames). The size
    conditioning is the frame size, uncropped: original size = target size = (H, W).
    """

    def _take_text(self, sdxl: SDXL) -> None:
        self.tokenizer_2 = sdxl.tokenizer_2
        self.text_encoder_2 = sdxl.text_encoder_2
        self.zeros_for_empty_prompt = sdxl.zeros_for_empty_prompt
        self.vae_factor = 2 ** (len(sdxl.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode_prompts(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, D1 + D2) penultimate hidden states of both encoders, and (1, P) the second's pooled projection."""
        from vsynth.core.diffusion.components import warn_if_cut
        from vsynth.core.diffusion.offload import execution_device

        warn_if_cut(self.tokenizer, prompt, self.tokenizer.model_max_length, self.text_encoder)  # both read 77
        states, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer([prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
            out = encoder(ids.input_ids.to(execution_device(encoder)), output_hidden_states=True)
            if out[0].ndim == 2:  # the encoder with projection: its pooled, projected embedding
                pooled = out[0]
            states.append(out.hidden_states[-2])
        dtype = self.text_encoder_2.dtype  # the pipeline casts both to the second encoder's dtype
        return torch.cat(states, dim=-1).to(dtype), pooled.to(dtype)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self.encode_prompts(prompt)[0].to(self.dtype)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        text, pooled = self.encode_prompts(prompt)
        if not negative_prompt and self.zeros_for_empty_prompt:
            negative, negative_pooled = torch.zeros_like(text), torch.zeros_like(pooled)
        else:
            negative, negative_pooled = self.encode_prompts(negative_prompt or "")
        extras = {**extras, "pooled": pooled.to(self.dtype), "negative_pooled": negative_pooled.to(self.dtype)}
        return Conditioning(text=text.to(self.dtype), negative=negative.to(self.dtype), extras=extras)

    def added_conditions(self, x: torch.Tensor, cond: Conditioning, cfg: bool) -> dict:
        """``added_cond_kwargs`` for the batch ``x`` (N, C, [F,] h, w), negatives first when ``cfg``: pooled text and
        time ids, one per batch entry (a motion UNet repeats them over frames itself)."""
        n = x.shape[0] // 2 if cfg else x.shape[0]
        pooled = cond.extras["pooled"].expand(n, -1)
        if cfg:
            pooled = torch.cat([cond.extras["negative_pooled"].expand(n, -1), pooled])
        h, w = (side * self.vae_factor for side in x.shape[-2:])
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=pooled.dtype, device=x.device).expand(x.shape[0], -1)
        return {"text_embeds": pooled.to(x.device), "time_ids": time_ids}


class SDXLDenoiser(SDXLConditions, FrameDenoiser):
    """SDXL's UNet on every frame, ``batch_size`` frames per call, as StableDiffusionXLPipeline calls it."""

    def __init__(self, sdxl: SDXL, batch_size: int | None = None):
        super().__init__(sdxl.unet, sdxl.scheduler, sdxl.tokenizer, sdxl.text_encoder, batch_size)
        self._take_text(sdxl)

    def unet_kwargs(self, x, t, embeddings, frames: slice, cond: Conditioning, cfg: bool) -> dict:
        return {"added_cond_kwargs": self.added_conditions(x, cond, cfg)}


class _SDXLOffload:
    """The second text encoder is a unit of its own for ``--offload model``, next to the first."""

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        units = {}
        for name, modules in super().offload_units().items():
            if name.startswith("unet") and "text_encoder_2" not in units:
                units["text_encoder_2"] = [self.denoiser.text_encoder_2]
            units[name] = modules
        return units


class SDXLModel(_SDXLOffload, SD15Model):
    """SDXL base or a finetune: text-to-image, or with a source video SDEdit at ``strength`` as
    StableDiffusionXLImg2ImgPipeline (the generation itself is :class:`SD15Model`'s)."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        sdxl = SDXL.load(sources["base"], runtime)
        model = cls(spec, params)
        model.denoiser = SDXLDenoiser(sdxl, params.batch_size)
        model.inversion_denoiser = model.denoiser
        model.codec = sdxl.codec()
        return model


class SDXLControlNetDenoiser(SDXLDenoiser):
    """SDXL's UNet plus an SDXL ControlNet's residuals from ``cond.extras['control']`` (F, 3, H, W) in [0, 1]."""

    def __init__(self, sdxl: SDXL, controlnet, conditioning_scale: float, batch_size: int | None):
        super().__init__(sdxl, batch_size)
        self.controlnet = controlnet
        self.conditioning_scale = conditioning_scale

    def unet_kwargs(self, x, t, embeddings, frames: slice, cond: Conditioning, cfg: bool) -> dict:
        added = self.added_conditions(x, cond, cfg)
        control = cond.extras["control"][frames]
        if cfg:
            control = torch.cat([control, control])
        down, mid = self.controlnet(
            x,
            t,
            encoder_hidden_states=embeddings,
            controlnet_cond=control,
            conditioning_scale=self.conditioning_scale,
            added_cond_kwargs=added,
            return_dict=False,
        )
        return {"added_cond_kwargs": added, "down_block_additional_residuals": down, "mid_block_additional_residual": mid}


class SDXLControlNet(_SDXLOffload, ControlMaps, ImageModel):
    """diffusers' SDXL ControlNets on SDXL base; control maps from the source video or --condition-video.
    The image-side inversion (BIVDiff) runs SDXL's plain UNet, without the ControlNet."""

    def __init__(self, spec, params, sdxl: SDXL, controlnet, runtime: Runtime):
        super().__init__(spec, params)
        self.runtime = runtime
        self.denoiser = SDXLControlNetDenoiser(sdxl, controlnet, params.conditioning_scale, params.batch_size)
        self.inversion_denoiser = SDXLDenoiser(sdxl, params.batch_size)
        self.codec = sdxl.codec()

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import ControlNetModel

        sdxl = SDXL.load(sources["base"], runtime)
        controlnet = load(ControlNetModel, sources["controlnet"], what="SDXL ControlNet", torch_dtype=runtime.dtype)
        model = cls(spec, params, sdxl, controlnet.to(runtime.home), runtime)
        model.control_maps = cls.make_control_maps(params, sources, runtime.home)
        return model

    def conditioning_networks(self) -> dict[str, torch.nn.Module]:
        return {"controlnet": self.denoiser.controlnet}

    def prepare(self, sources: Sources) -> FrameInputs:
        maps = sources.condition if sources.condition is not None else self.control_maps(sources.video)
        control = torch.from_numpy(maps).permute(0, 3, 1, 2).to(self.runtime.device, self.runtime.dtype) / 255.0
        return FrameInputs(extras={"control": control}, condition_frames=maps)


class SDXLControlNetCanny(SDXLControlNet):
    kind = "canny"


class SDXLControlNetDepth(SDXLControlNet):
    kind = "depth"

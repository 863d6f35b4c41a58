"""ControlNet v1.1 image models: control maps from the source video, all frames batched."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.components import load
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Runtime, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.plugins.idm.detectors import ControlMaps
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser


class ControlNetDenoiser(FrameDenoiser):
    """SD1.5 UNet plus ControlNet residuals computed from ``cond.extras['control']`` (F, 3, H, W) in [0, 1]."""

    def __init__(self, sd: SD15, controlnet, conditioning_scale: float, batch_size: int | None):
        super().__init__(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, batch_size)
        self.controlnet = controlnet
        self.conditioning_scale = conditioning_scale

    def unet_kwargs(self, x, t, embeddings, frames: slice, cond: Conditioning, cfg: bool) -> dict:
        control = cond.extras["control"][frames]
        if cfg:
            control = torch.cat([control, control])
        down, mid = self.controlnet(
            x,
            t,
            encoder_hidden_states=embeddings,
            controlnet_cond=control,
            conditioning_scale=self.conditioning_scale,
            return_dict=False,
        )
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


class ControlNet(ControlMaps, ImageModel):
    """ControlNet IDMs; a subclass names its control family (``kind``) or overrides ``make_control_maps``
    (:class:`~vsynth.plugins.idm.detectors.ControlMaps`); the maps come from the source video, or as
    given with --condition-video."""


    def __init__(self, spec, params, sd: SD15, controlnet, runtime: Runtime):
        super().__init__(spec, params)
        self.runtime = runtime
        self.denoiser = ControlNetDenoiser(sd, controlnet, params.conditioning_scale, params.batch_size)
        self.inversion_denoiser = FrameDenoiser(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size)
        self.codec = sd.codec()

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import ControlNetModel

        sd = SD15.load(sources["base"], runtime)
        controlnet = load(ControlNetModel, sources["controlnet"], what="ControlNet", torch_dtype=runtime.dtype)
        model = cls(spec, params, sd, controlnet.to(runtime.home), runtime)
        model.control_maps = cls.make_control_maps(params, sources, runtime.home)
        return model

    def conditioning_networks(self) -> dict[str, torch.nn.Module]:
        return {"controlnet": self.denoiser.controlnet}

    def prepare(self, sources: Sources) -> FrameInputs:
        maps = sources.condition if sources.condition is not None else self.control_maps(sources.video)
        control = torch.from_numpy(maps).permute(0, 3, 1, 2).to(self.runtime.device, self.runtime.dtype) / 255.0
        return FrameInputs(extras={"control": control}, condition_frames=maps)


class ControlNetCanny(ControlNet):
    kind = "canny"


class ControlNetDepth(ControlNet):
    kind = "depth"


class ControlNetOpenpose(ControlNet):
    kind = "openpose"

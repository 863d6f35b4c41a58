"""T2I-Adapter image models: adapter features from control maps, computed once, added in every UNet call."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.components import load
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Runtime, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.plugins.idm.detectors import ControlMaps
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser


class AdapterDenoiser(FrameDenoiser):
    """SD1.5 UNet plus ``cond.extras['adapter_features']`` (scaled per-frame features) as intra-block residuals."""

    def unet_kwargs(self, x, t, embeddings, frames: slice, cond: Conditioning, cfg: bool) -> dict:
        features = [f[frames] for f in cond.extras["adapter_features"]]
        if cfg:
            features = [torch.cat([f, f]) for f in features]
        return {"down_intrablock_additional_residuals": features}  # the UNet pops from this list: a fresh one per call


class T2IAdapter(ControlMaps, ImageModel):
    """T2I-Adapter IDMs; a subclass names its control family (``kind``) or overrides ``make_control_maps``, as for ControlNet."""


    def __init__(self, spec, params, sd: SD15, adapter, runtime: Runtime):
        super().__init__(spec, params)
        self.runtime = runtime
        self.adapter = adapter
        self.denoiser = AdapterDenoiser(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size)
        self.inversion_denoiser = FrameDenoiser(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size)
        self.codec = sd.codec()

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import T2IAdapter as Adapter

        sd = SD15.load(sources["base"], runtime)
        adapter = load(Adapter, sources["adapter"], what="T2I-Adapter", torch_dtype=runtime.dtype).to(runtime.home)
        model = cls(spec, params, sd, adapter, runtime)
        model.control_maps = cls.make_control_maps(params, sources, runtime.home)
        return model

    def conditioning_networks(self) -> dict[str, torch.nn.Module]:
        return {"adapter": self.adapter}

    @torch.no_grad()
    def prepare(self, sources: Sources) -> FrameInputs:
        """Maps in [0, 1], one channel for adapters trained on grayscale maps (canny), as the adapter pipeline feeds them."""
        maps = sources.condition if sources.condition is not None else self.control_maps(sources.video)
        pixels = torch.from_numpy(maps).permute(0, 3, 1, 2).to(self.runtime.device, self.runtime.dtype) / 255.0
        pixels = pixels[:, : self.adapter.config.in_channels]
        features = [f * self.params.conditioning_scale for f in self.adapter(pixels)]
        return FrameInputs(extras={"adapter_features": features}, condition_frames=maps)


class T2IAdapterCanny(T2IAdapter):
    kind = "canny"


class T2IAdapterDepth(T2IAdapter):
    kind = "depth"

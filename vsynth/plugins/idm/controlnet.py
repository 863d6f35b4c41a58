"""ControlNet v1.1 image models: control maps from the source video, all frames batched."""

from __future__ import annotations

import numpy as np
import torch

from vsynth.core.components import load
from vsynth.core.models import Conditioning, FrameInputs, ImageModel, Runtime
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


class ControlNet(ImageModel):
    """Base of the ControlNet IDMs; subclasses turn source frames into control maps."""

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
        model = cls(spec, params, sd, controlnet.to(runtime.device), runtime)
        model.load_extras(sources)
        return model

    def load_extras(self, sources: dict[str, str]) -> None:
        """Load what the control maps need besides the ControlNet (e.g. a depth estimator)."""

    def control_maps(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, H, W, 3) control maps for uint8 (F, H, W, 3) frames."""
        raise NotImplementedError

    def prepare(self, frames: np.ndarray) -> FrameInputs:
        maps = self.control_maps(frames)
        control = torch.from_numpy(maps).permute(0, 3, 1, 2).to(self.runtime.device, self.runtime.dtype) / 255.0
        return FrameInputs(extras={"control": control}, condition_frames=maps)


class ControlNetCanny(ControlNet):
    def control_maps(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        edges = [cv2.Canny(frame, self.params.low_threshold, self.params.high_threshold) for frame in frames]
        return np.repeat(np.stack(edges)[..., None], 3, axis=-1)


class ControlNetDepth(ControlNet):
    def load_extras(self, sources: dict[str, str]) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        source = sources["depth_estimator"]
        self.depth_processor = load(AutoImageProcessor, source, what="depth estimator")
        self.depth_model = load(AutoModelForDepthEstimation, source, what="depth estimator").to(self.runtime.device).eval()

    @torch.no_grad()
    def control_maps(self, frames: np.ndarray) -> np.ndarray:
        """Relative depth per frame, resized to the frame and min-max normalised (near = bright), as ControlNet expects."""
        inputs = self.depth_processor(images=list(frames), return_tensors="pt").to(self.runtime.device)
        depth = self.depth_model(**inputs).predicted_depth.float()  # (F, h, w)
        depth = torch.nn.functional.interpolate(depth[:, None], size=frames.shape[1:3], mode="bicubic", align_corners=False)[:, 0]
        low = depth.amin(dim=(1, 2), keepdim=True)
        high = depth.amax(dim=(1, 2), keepdim=True)
        depth = (depth - low) / (high - low).clamp_min(1e-8)
        maps = (depth * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return np.repeat(maps[..., None], 3, axis=-1)

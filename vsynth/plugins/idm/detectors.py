"""Control maps from source frames, shared by the ControlNet and T2I-Adapter families.

Each returns uint8 (F, H, W, 3) maps for uint8 (F, H, W, 3) RGB frames.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vsynth.core.diffusion.components import load


def canny_maps(frames: np.ndarray, low: int, high: int) -> np.ndarray:
    import cv2

    edges = [cv2.Canny(frame, low, high) for frame in frames]
    return np.repeat(np.stack(edges)[..., None], 3, axis=-1)


class DepthEstimator:
    """A transformers depth-estimation model (DPT, Depth Anything) and its image processor."""

    def __init__(self, source: str, device: torch.device):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.processor = load(AutoImageProcessor, source, what="depth estimator")
        self.model = load(AutoModelForDepthEstimation, source, what="depth estimator").to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Relative depth per frame, resized to the frame and min-max normalised (near = bright), as ControlNet expects."""
        inputs = self.processor(images=list(frames), return_tensors="pt").to(self.device)
        depth = self.model(**inputs).predicted_depth.float()  # (F, h, w)
        depth = torch.nn.functional.interpolate(depth[:, None], size=frames.shape[1:3], mode="bicubic", align_corners=False)[:, 0]
        low = depth.amin(dim=(1, 2), keepdim=True)
        high = depth.amax(dim=(1, 2), keepdim=True)
        depth = (depth - low) / (high - low).clamp_min(1e-8)
        maps = (depth * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return np.repeat(maps[..., None], 3, axis=-1)


MapMaker = Callable[[np.ndarray], np.ndarray]


def map_maker(kind: str, params, sources: dict[str, str], device: torch.device) -> MapMaker:
    """The detector of a built-in control family ("canny", "depth", "openpose"), loading what it needs now."""
    if kind == "canny":
        return lambda frames: canny_maps(frames, params.low_threshold, params.high_threshold)
    if kind == "depth":
        return DepthEstimator(sources["depth_estimator"], device)
    if kind == "openpose":
        from vsynth.plugins.idm.openpose import OpenposeMaps

        return OpenposeMaps(params.detector, device)
    raise ValueError(f"no built-in detector for the control kind {kind!r}: override make_control_maps to add a condition type")


class ControlMaps:
    """The condition hook of the ControlNet and T2I-Adapter families: where their control maps come from.

    A built-in family names its detector with ``kind``; a new condition type (soft edges, normals,
    a segmentation) overrides :meth:`make_control_maps` instead, and keeps everything else of the
    family: loading, --condition-video, the residuals, condition.mp4.
    """

    kind: str = ""

    @classmethod
    def make_control_maps(cls, params, sources: dict[str, str], device: torch.device) -> MapMaker:
        """The function turning uint8 (F, H, W, 3) RGB source frames into uint8 (F, H, W, 3) control maps,
        built once when the model loads: load any detector weights here (``sources`` maps each weights
        role to its folder or hub id); ``params`` are the model's validated params; ``device`` is where to
        load a detector network (the CPU under ``--offload``, whose hooks move it to the GPU while it runs)."""
        return map_maker(cls.kind, params, sources, device)

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        """A detector network (the depth estimator) runs first, before the model's own."""
        detector = getattr(self.control_maps, "model", None)
        first = {"detector": [detector]} if isinstance(detector, torch.nn.Module) else {}
        return {**first, **super().offload_units()}

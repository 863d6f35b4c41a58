"""The built-in metrics' implementations (their specs: :mod:`vsynth.plugins.metrics`)."""

from __future__ import annotations

import numpy as np

from vsynth.core.run.measure import Metric, Sample
from vsynth.metrics import clip, control, flow, temporal


class FrameDifference(Metric):
    min_frames = 2  # no pair of frames: "not measurable", not a difference of 0

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return temporal.mean_abs_frame_difference(frames)


class Flicker(Metric):
    min_frames = 2  # the change between frames

    def measure(self, frames: np.ndarray, sample: Sample):
        return temporal.brightness_flicker(frames)


class EdgeF1(Metric):
    """The output's Canny edges at the run's thresholds against a Canny condition."""

    def applies(self, sample: Sample) -> str | None:
        return None if (sample.detector or {}).get("kind") == "canny" else "the condition is not Canny edges"

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        detector = sample.detector
        return control.edge_f1(frames, sample.condition, low=detector["low_threshold"], high=detector["high_threshold"])


class ControlAdherence(Metric):
    """Re-detect the condition on the output with the run's own detector, and compare with the source's."""

    def applies(self, sample: Sample) -> str | None:
        return None if (sample.detector or {}).get("maps") is not None else "no detector to re-detect the condition with"

    def measure(self, frames: np.ndarray, sample: Sample):
        maps = sample.detector["maps"](frames)
        return control.redetected_adherence(maps, sample.condition, sample.detector.get("kind", ""))


class _Clip(Metric):
    def __init__(self, spec, weights, device="cpu"):
        super().__init__(spec, weights, device)
        self.model, self.processor = clip.load_clip(weights["clip"], device)


class TextAlignment(_Clip):
    def measure(self, frames: np.ndarray, sample: Sample):
        return clip.text_alignment(frames, sample.prompt, self.model, self.processor)


class FrameConsistency(_Clip):
    min_frames = 2  # consecutive frames' similarity

    def measure(self, frames: np.ndarray, sample: Sample):
        return clip.frame_consistency(frames, self.model, self.processor) if len(frames) > 1 else float("nan")


class FlowWarpingError(Metric):
    """RAFT (torchvision) when torchvision imports; else OpenCV's DIS flow, said in ``note``."""

    min_frames = 2

    @classmethod
    def uses_weights(cls) -> bool:
        return flow.import_torchvision() is not None

    def __init__(self, spec, weights, device="cpu"):
        super().__init__(spec, weights, device)
        self.model = flow.load_raft(weights["raft"], device) if "raft" in weights else None
        self.note = "RAFT (torchvision)" if self.model is not None else "OpenCV DIS flow: torchvision is not installed, RAFT unavailable"

    def measure(self, frames: np.ndarray, sample: Sample):
        flows = flow.raft_flows(frames, self.model) if self.model is not None else flow.dis_flows(frames)
        return flow.warping_errors(frames, *flows)

"""The toy world's ground truth and metrics as the run pipeline and `vsynth eval` reach them (specs: :mod:`vsynth.toy.plugin`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsynth.core.run.measure import Metric, Sample
from vsynth.metrics.prompt import background_adherence, colour_adherence, colour_masks, detected_colour_adherence
from vsynth.metrics.quality import classifier_accuracy, parse_toy_subject, shipped_classifier
from vsynth.metrics.report import parse_toy_prompt
from vsynth.metrics.temporal import background_flicker, centroid_speed, warping_error
from vsynth.toy import shipped, truth, world


class ToyWorld:
    """The toy world's answers to the run pipeline: ground truth of its clips, its weights, its vocabulary."""

    def truth(self, video: Path, *, frames: int, stride: int, size: tuple[int, int]):
        return truth.load_ground_truth(video, frames=frames, stride=stride, size=size)

    def check(self, video: Path, info) -> None:
        truth.check_ground_truth(video, info)

    def weights(self, name: str) -> Path:
        return shipped.toy_weights(name)

    def unknown_words(self, prompt: str) -> list[str]:
        return world.words_outside_vocabulary(prompt)


class _ToyPrompt(Metric):
    """A metric that reads the colours (and background) a toy-vocabulary prompt names."""

    def applies(self, sample: Sample) -> str | None:
        self.parsed = parse_toy_prompt(sample.prompt or "")
        return None if self.parsed is not None else "the prompt names no toy colour"


class WarpingError(Metric):
    min_frames = 2  # change between frames

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return warping_error(frames, sample.truth.masks, sample.truth.positions)


class BackgroundFlicker(Metric):
    min_frames = 2  # change between frames

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return background_flicker(frames, sample.truth.masks)


class ColourAdherence(_ToyPrompt):
    def applies(self, sample: Sample) -> str | None:
        reason = super().applies(sample)
        if reason is None and len(self.parsed[0]) != sample.truth.masks.shape[1]:
            return "the prompt names another number of colours than the clip has shapes"
        return reason

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return colour_adherence(frames, sample.truth.masks, self.parsed[0])


class BackgroundAdherence(_ToyPrompt):
    def applies(self, sample: Sample) -> str | None:
        reason = super().applies(sample)
        return reason or (None if self.parsed[1] is not None else "the prompt names no background")

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return background_adherence(frames, sample.truth.masks, self.parsed[1])


class DetectedColourAdherence(_ToyPrompt):
    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        colours, background = self.parsed
        return detected_colour_adherence(frames, colours, background or "gradient")


class ShapeSpeed(_ToyPrompt):
    min_frames = 2  # motion needs two frames: "not measurable", not a speed of 0

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return centroid_speed(colour_masks(frames, self.parsed[0]))


class ClassifierAccuracy(Metric):
    def applies(self, sample: Sample) -> str | None:
        self.subject = parse_toy_subject(sample.prompt or "")
        if self.subject is None:
            return "the prompt does not name one toy shape and one colour"
        return None if shipped_classifier() is not None else "the toy classifier is not installed"

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        return classifier_accuracy(frames, *self.subject)


class _ToyMotion(Metric):
    """A metric that reads the motion a toy prompt names ("a red circle moving left ..."); one frame has none."""

    min_frames = 2

    def applies(self, sample: Sample) -> str | None:
        self.motion = world.parse_motion(sample.prompt or "")
        return None if self.motion is not None else "the prompt names no toy motion"


class DirectionAgreement(_ToyMotion):
    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        from vsynth.metrics.motion import direction_agreement

        return direction_agreement(frames, self.motion["motion"], self.motion["colour"])


class SpeedAgreement(_ToyMotion):
    def applies(self, sample: Sample) -> str | None:
        why = super().applies(sample)
        return why or ("growing has no speed along a path" if self.motion["motion"] == "growing" else None)

    def measure(self, frames: np.ndarray, sample: Sample) -> float:
        from vsynth.metrics.motion import speed_agreement

        return speed_agreement(frames, self.motion["speed"] * frames.shape[2] / 64, self.motion["colour"])

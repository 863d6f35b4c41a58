"""Metrics that need no external weights: control, prompt and temporal adherence, frame quality.

Each takes uint8 frames (F, H, W, 3) and what the run knows (condition maps, or the toy world's
ground truth: shape masks, motion, colours) and returns plain floats, so that run.json, the
quality benchmark and the tests read the same numbers. numpy (and OpenCV) only, except the frame
classifier in :mod:`vsynth.metrics.quality`.
"""

from vsynth.metrics.control import edge_f1
from vsynth.metrics.motion import direction_agreement, object_track, speed_agreement
from vsynth.metrics.prompt import background_adherence, colour_adherence
from vsynth.metrics.quality import classifier_accuracy
from vsynth.metrics.temporal import background_flicker, mean_abs_frame_difference, warping_error

__all__ = [
    "background_adherence",
    "background_flicker",
    "classifier_accuracy",
    "colour_adherence",
    "direction_agreement",
    "edge_f1",
    "mean_abs_frame_difference",
    "object_track",
    "speed_agreement",
    "warping_error",
]

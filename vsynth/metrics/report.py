"""The metrics a run's inputs allow, as run.json records them.

Every run gets the mean absolute frame difference of each video. A run whose IDM follows Canny
edges also gets the edge F1 of the IDM frames and of the final video against the condition. A
run on a toy clip (ground truth beside it, see :mod:`vsynth.toy.truth`) also gets prompt
adherence, warping error and background flicker under the known motion; a run whose prompt is in
the toy vocabulary gets the ground-truth-free colour adherence and shape motion, and, when it
names one shape and one colour, the toy classifier's accuracy (frame quality); a prompt that names a
motion ("a red circle moving left ...") gets direction and speed agreement (:mod:`vsynth.metrics.motion`).
"""

from __future__ import annotations

import re

import numpy as np

from vsynth.metrics.control import edge_f1
from vsynth.metrics.prompt import background_adherence, colour_adherence, colour_masks, detected_colour_adherence
from vsynth.metrics.quality import classifier_accuracy, parse_toy_subject, shipped_classifier
from vsynth.metrics.temporal import background_flicker, centroid_speed, mean_abs_frame_difference, warping_error


def parse_toy_prompt(prompt: str) -> tuple[list[str], str | None] | None:
    """(colours in order of mention, background or None) of a toy-vocabulary prompt; None if it names no palette colour."""
    from vsynth.toy.world import BACKGROUNDS, COLOURS

    words = re.findall(r"[a-z]+", prompt.lower())
    colours = [w for w in words if w in COLOURS]
    background = None
    for i, word in enumerate(words[:-1]):
        if words[i + 1] == "background" and word in BACKGROUNDS:
            background = word
    return (colours, background) if colours else None


def run_metrics(
    videos: dict[str, np.ndarray | None],
    *,
    prompt: str,
    canny: tuple[int, int] | None = None,
    truth=None,
) -> dict[str, dict[str, float]]:
    """``{metric: {video: value}}`` for the videos named in ``videos`` ("source", "condition", "idm", "final").

    ``canny`` (low, high) when the condition is Canny edges; ``truth`` a :class:`vsynth.toy.world.Clip`
    at the run's frames and size, when the source is a toy clip.
    """
    named = {name: frames for name, frames in videos.items() if frames is not None and name != "condition"}
    metrics: dict[str, dict[str, float]] = {
        "mean_abs_frame_difference": {name: mean_abs_frame_difference(frames) for name, frames in named.items()}
    }
    outputs = {name: frames for name, frames in named.items() if name != "source"}
    condition = videos.get("condition")
    if canny is not None and condition is not None:
        metrics["edge_f1"] = {name: edge_f1(frames, condition, low=canny[0], high=canny[1]) for name, frames in outputs.items()}
    parsed = parse_toy_prompt(prompt)
    if parsed is not None:
        colours, background = parsed
        metrics["detected_colour_adherence"] = {
            name: detected_colour_adherence(frames, colours, background or "gradient") for name, frames in named.items()
        }
        metrics["shape_speed"] = {name: centroid_speed(colour_masks(frames, colours)) for name, frames in named.items()}
    from vsynth.metrics.motion import direction_agreement, speed_agreement
    from vsynth.toy.world import parse_motion

    motion = parse_motion(prompt)
    if motion is not None:  # "a red circle moving left ...": does the prompted colour's object move that way?
        metrics["direction_agreement"] = {name: direction_agreement(f, motion["motion"], motion["colour"]) for name, f in named.items()}
        if motion["motion"] != "growing":
            speed = motion["speed"] * next(iter(named.values())).shape[2] / 64 if named else motion["speed"]
            metrics["speed_agreement"] = {name: speed_agreement(f, speed, motion["colour"]) for name, f in named.items()}
    subject = parse_toy_subject(prompt)
    if subject is not None and shipped_classifier() is not None:
        metrics["classifier_accuracy"] = {name: classifier_accuracy(frames, *subject) for name, frames in named.items()}
    if truth is not None:
        metrics["warping_error"] = {name: warping_error(f, truth.masks, truth.positions) for name, f in named.items()}
        metrics["background_flicker"] = {name: background_flicker(f, truth.masks) for name, f in named.items()}
        if parsed is not None and len(parsed[0]) == truth.masks.shape[1]:
            metrics["colour_adherence"] = {name: colour_adherence(f, truth.masks, parsed[0]) for name, f in named.items()}
            if parsed[1] is not None:
                metrics["background_adherence"] = {name: background_adherence(f, truth.masks, parsed[1]) for name, f in named.items()}
    return {metric: {name: round(float(v), 4) for name, v in values.items()} for metric, values in metrics.items()}

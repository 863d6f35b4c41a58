"""The sharpness metric: blurring a video lowers it, and a run asked for it records it."""

import cv2
import numpy as np

from vsynth.core.host.registry import get_registry
from vsynth.core.run import measure


def test_blur_lowers_sharpness(source_frames):
    spec = get_registry().metric("sharpness")
    blurred = np.stack([cv2.GaussianBlur(f, (7, 7), 3) for f in source_frames])
    result = measure.measure([spec], {"sharp": source_frames, "blurred": blurred}, measure.Sample())
    assert result.values["sharpness"]["blurred"] < 0.5 * result.values["sharpness"]["sharp"]
    assert len(result.curves["sharpness"]["sharp"]) == len(source_frames)  # one value per frame: a curve in `vsynth eval --compare`

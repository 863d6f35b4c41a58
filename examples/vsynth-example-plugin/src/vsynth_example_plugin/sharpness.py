"""A metric: how sharp each frame is (variance of its Laplacian), the usual blur detector.

A metric's implementation subclasses :class:`vsynth.core.run.measure.Metric`; ``measure`` returns one
number, or one per frame (``vsynth eval --compare`` draws those as curves; the mean is the value).
"""

from __future__ import annotations

import numpy as np

from vsynth.core.run.measure import Metric, Sample


class Sharpness(Metric):
    def measure(self, frames: np.ndarray, sample: Sample) -> list[float]:
        import cv2

        return [float(cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()) for f in frames]

"""Control adherence: do the output's edges follow the condition's edges?"""

from __future__ import annotations

import numpy as np

EDGE_TOLERANCE = 2  # pixels: an edge found this close to a condition edge counts as following it


def canny_edges(frames: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """bool (F, H, W) Canny edges of uint8 RGB frames, as the canny IDMs compute their maps."""
    import cv2

    return np.stack([cv2.Canny(np.ascontiguousarray(frame), low, high) > 0 for frame in frames])


def edge_f1(frames: np.ndarray, condition: np.ndarray, *, tolerance: int = EDGE_TOLERANCE, low: int = 100, high: int = 200) -> float:
    """F1 of the frames' Canny edges against the condition's edges, each matched within ``tolerance`` pixels.

    ``condition`` is the control maps (uint8 (F, H, W, 3) or bool (F, H, W)): an edge pixel is any
    non-zero pixel. Precision: the share of output edges near a condition edge; recall: the share
    of condition edges near an output edge. Averaged over frames; a frame with no edges on either
    side counts as 1 (nothing to follow, nothing invented), on one side only as 0.
    """
    import cv2

    produced = canny_edges(frames, low, high)
    wanted = (condition.max(axis=-1) if condition.ndim == 4 else condition) > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    scores = []
    for out, ref in zip(produced, wanted):
        if not out.any() and not ref.any():
            scores.append(1.0)
            continue
        near_ref = cv2.dilate(ref.astype(np.uint8), kernel) > 0
        near_out = cv2.dilate(out.astype(np.uint8), kernel) > 0
        precision = (out & near_ref).sum() / max(out.sum(), 1)
        recall = (ref & near_out).sum() / max(ref.sum(), 1)
        scores.append(0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall)))
    return float(np.mean(scores))

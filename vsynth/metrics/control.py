"""Control adherence: do the output's edges follow the condition's edges?"""

from __future__ import annotations

import numpy as np

EDGE_TOLERANCE = 2  # pixels: an edge found this close to a condition edge counts as following it
# A drawn pixel of a map (an edge, a limb) is over half the full scale: maps are drawn at 255 (a limb's colour has a
# channel of 170 or more), and a map read back from a run's condition.mp4 carries the codec's noise around its lines
# (a few grey levels; counted as edges it made 4x more "edges" than the map has, and `vsynth eval` disagreed with run.json)
DRAWN = 127


def drawn(maps: np.ndarray) -> np.ndarray:
    """bool (F, H, W): the drawn pixels of uint8 (F, H, W, 3) maps; bool maps as they are."""
    return maps if maps.dtype == bool else (maps.max(axis=-1) if maps.ndim == 4 else maps) > DRAWN


def canny_edges(frames: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """bool (F, H, W) Canny edges of uint8 RGB frames, as the canny IDMs compute their maps."""
    import cv2

    return np.stack([cv2.Canny(np.ascontiguousarray(frame), low, high) > 0 for frame in frames])


def edge_f1(frames: np.ndarray, condition: np.ndarray, *, tolerance: int = EDGE_TOLERANCE, low: int = 100, high: int = 200) -> float:
    """F1 of the frames' Canny edges against the condition's edges, each matched within ``tolerance`` pixels.

    ``condition`` is the control maps (uint8 (F, H, W, 3) or bool (F, H, W)): an edge pixel is a
    drawn one (:func:`drawn`). Precision: the share of output edges near a condition edge; recall: the share
    of condition edges near an output edge. Averaged over frames; a frame with no edges on either
    side counts as 1 (nothing to follow, nothing invented), on one side only as 0.
    """
    wanted = drawn(condition)
    return float(np.mean(map_f1(canny_edges(frames, low, high), wanted, tolerance=tolerance)))


def map_f1(produced: np.ndarray, wanted: np.ndarray, *, tolerance: int = EDGE_TOLERANCE) -> list[float]:
    """Per frame: F1 of bool (F, H, W) ``produced`` pixels against ``wanted``, each matched within ``tolerance`` pixels."""
    import cv2

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
    return scores


POSE_TOLERANCE = 4  # pixels: a drawn limb this close to the source's counts as the same pose


def redetected_adherence(maps: np.ndarray, condition: np.ndarray, kind: str) -> list[float]:
    """Per frame, 0..1: how well control maps re-detected on an output agree with the source's ``condition`` maps.

    canny: edge F1 (within 2 pixels); depth: 1 - mean absolute difference of the normalised depth maps;
    openpose: F1 of the drawn skeletons' pixels (within 4 pixels); any other kind: 1 - mean absolute
    map difference. Both uint8 (F, H, W, 3).
    """
    if kind in ("canny", "openpose"):
        tolerance = EDGE_TOLERANCE if kind == "canny" else POSE_TOLERANCE
        return map_f1(drawn(maps), drawn(condition), tolerance=tolerance)
    diff = np.abs(maps.astype(np.float32) - condition.astype(np.float32)).reshape(len(maps), -1).mean(axis=1) / 255.0
    return [float(1.0 - d) for d in diff]

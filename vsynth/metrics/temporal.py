"""Temporal consistency: how much consecutive frames change beyond the motion the world has."""

from __future__ import annotations

import numpy as np

from vsynth.core.media.video import mean_abs_frame_difference  # noqa: F401  (the figure every run.json has)

EDGE_MARGIN = 2  # pixels


def warping_error(frames: np.ndarray, masks: np.ndarray, positions: np.ndarray) -> float:
    """Mean absolute difference (0..1 scale) over the shapes between each frame and the previous one moved by the known motion.

    The toy world's shapes move rigidly: each pixel of shape s at frame t+1 should equal the pixel
    of frame t displaced by -(positions[t+1, s] - positions[t, s]) (rounded to whole pixels; pixels
    within ``EDGE_MARGIN`` of the shape's outline are left out, where sub-pixel motion moves edges). What
    remains is the shapes' flicker and drift; :func:`background_flicker` measures the rest.
    ``masks`` bool (F, S, H, W), ``positions`` (F, S, 2) as (x, y).
    """
    import cv2

    f, _, h, w = masks.shape
    ys, xs = np.mgrid[0:h, 0:w]
    kernel = np.ones((2 * EDGE_MARGIN + 1, 2 * EDGE_MARGIN + 1), np.uint8)
    errors, counts = 0.0, 0
    for t in range(f - 1):
        prev, cur = frames[t].astype(np.float32), frames[t + 1].astype(np.float32)
        for s in range(masks.shape[1]):
            dx, dy = np.round(positions[t + 1, s] - positions[t, s]).astype(int)
            sy, sx = ys - dy, xs - dx
            interior = cv2.erode(masks[t + 1, s].astype(np.uint8), kernel) > 0
            valid = interior & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            errors += np.abs(cur[valid] - prev[sy[valid], sx[valid]]).sum()
            counts += int(valid.sum()) * 3
    return float(errors / counts / 255.0) if counts else 0.0


def background_flicker(frames: np.ndarray, masks: np.ndarray) -> float:
    """Mean absolute change (0..1 scale) of background pixels, outside every shape in both frames."""
    diffs = []
    for t in range(len(frames) - 1):
        still = ~masks[t].any(axis=0) & ~masks[t + 1].any(axis=0)
        diffs.append(np.abs(frames[t + 1].astype(np.float32)[still] - frames[t].astype(np.float32)[still]))
    values = np.concatenate([d.ravel() for d in diffs]) if diffs else np.zeros(0)
    return float(values.mean() / 255.0) if values.size else 0.0


def centroid_speed(masks: np.ndarray) -> float:
    """Mean distance (pixels per frame) that the centroid of each mask moves between consecutive frames.

    ``masks`` bool (F, S, H, W), e.g. from :func:`vsynth.metrics.prompt.colour_masks`: the motion a
    video shows without ground truth. Frames where a mask is empty are skipped.
    """
    f, s, h, w = masks.shape
    ys, xs = np.mgrid[0:h, 0:w]
    steps = []
    for k in range(s):
        centroids = [
            (xs[m].mean(), ys[m].mean()) if m.sum() >= 4 else None for m in masks[:, k]
        ]
        steps += [np.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(centroids, centroids[1:]) if a is not None and b is not None]
    return float(np.mean(steps)) if steps else 0.0


def brightness_flicker(frames: np.ndarray) -> np.ndarray:
    """Per pair of consecutive frames: the absolute change (0..1) of the frame's mean brightness.

    Global flicker, which moving content hardly changes (unlike :func:`mean_abs_frame_difference`).
    """
    means = frames.reshape(len(frames), -1).astype(np.float64).mean(axis=1) / 255.0
    return np.abs(np.diff(means))

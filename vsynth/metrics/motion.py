"""Motion adherence: where the object is in each frame, and whether it moves the way the prompt says.

No ground truth needed: the object is found by colour (the pixels nearest the prompted colour) or, without
one, as every pixel far from the frame's background (its border's median colour). numpy only.
"""

from __future__ import annotations

import numpy as np

MIN_PIXELS = 4  # a frame whose object has fewer pixels has no centroid (NaN)
MIN_SPEED = 0.5  # pixels per frame: slower than this is "not moving"
MIN_FOUND = 0.75  # share of frames in which the object must be found for it to move at all
MIN_R2 = 0.6  # the track along the motion must be this close to a straight line (noise has a centroid that jumps)
FOREGROUND_DISTANCE = 90.0  # RGB distance from the background colour that makes a pixel foreground


def object_masks(frames: np.ndarray, colour: str | None = None) -> np.ndarray:
    """(F, H, W) bool: the pixels nearest ``colour`` (a toy palette name) among the named colours, or without
    a colour the pixels at least FOREGROUND_DISTANCE from the median colour of the frame's border."""
    frames = np.asarray(frames)
    if colour is not None:
        from vsynth.toy.world import NAMED_COLOURS, nearest_colour_names

        names = tuple(NAMED_COLOURS)
        return nearest_colour_names(frames, names) == names.index(colour)
    border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1).astype(np.float32)
    background = np.median(border, axis=1)  # (F, 3)
    distance = np.linalg.norm(frames.astype(np.float32) - background[:, None, None], axis=-1)
    return distance >= FOREGROUND_DISTANCE


def object_track(frames: np.ndarray, colour: str | None = None) -> np.ndarray:
    """(F, 3): the object's centroid (x, y, in pixels from the top-left corner) and its area (pixels) in each frame; NaN centroid where it is not found."""
    masks = object_masks(frames, colour)
    f, h, w = masks.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres, the toy world's coordinates
    track = np.full((f, 3), np.nan)
    for t, m in enumerate(masks):
        n = int(m.sum())
        track[t, 2] = n
        if n >= MIN_PIXELS:
            track[t, 0], track[t, 1] = xs[m].mean(), ys[m].mean()
    return track


def track_velocity(track: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (vx, vy) in pixels per frame over the frames where the object is found, and the
    area's growth in pixels per frame; NaNs with fewer than two such frames."""
    ok = ~np.isnan(track[:, 0])
    if ok.sum() < 2:
        return float("nan"), float("nan"), float("nan")
    t = np.arange(len(track))[ok]
    vx, vy, va = (float(np.polyfit(t, track[ok, k], 1)[0]) for k in range(3))
    return vx, vy, va


def direction_agreement(frames: np.ndarray, motion: str, colour: str | None = None, min_speed: float = MIN_SPEED) -> float:
    """1.0 when the object moves the prompted way, else 0.0.

    ``motion`` is "left", "right", "up", "down" (the object is found in MIN_FOUND of the frames, the fitted
    velocity's component along that direction is at least ``min_speed`` px/frame and larger than the
    perpendicular one, and the track along it is close to a straight line: R^2 >= MIN_R2) or "growing" (the area grows by at
    least ``min_speed`` px/frame per unit of its mean radius while the centroid moves less than ``min_speed``
    px/frame).
    """
    from vsynth.toy.world import DIRECTION_VECTORS

    vx, vy, va = track_velocity(object_track(frames, colour))
    if np.isnan(vx):
        return 0.0
    if motion == "growing":
        area = np.nanmean(object_track(frames, colour)[:, 2])
        radius = np.sqrt(max(area, 1.0) / np.pi)
        return float(va / (2 * np.pi * radius) >= min_speed / 2 and np.hypot(vx, vy) < min_speed)
    track = object_track(frames, colour)
    found = ~np.isnan(track[:, 0])
    if found.mean() < MIN_FOUND:
        return 0.0
    dx, dy = DIRECTION_VECTORS[motion]
    along = vx * dx + vy * dy
    across = abs(vx * dy - vy * dx)
    path = track[found, 0] * dx + track[found, 1] * dy
    t = np.arange(len(track))[found]
    residual = path - np.polyval(np.polyfit(t, path, 1), t)
    r2 = 1 - residual.var() / max(path.var(), 1e-9)
    return float(along >= min_speed and along > across and r2 >= MIN_R2)


def speed_agreement(frames: np.ndarray, speed: float, colour: str | None = None) -> float:
    """How close the object's speed (px/frame) is to ``speed``: 1 - |measured - speed| / speed, floored at 0."""
    vx, vy, _ = track_velocity(object_track(frames, colour))
    if np.isnan(vx) or speed <= 0:
        return 0.0
    return float(max(0.0, 1.0 - abs(np.hypot(vx, vy) - speed) / speed))


def motion_report(frames: np.ndarray, prompt: str, size: int | None = None) -> dict | None:
    """The motion metrics of a video against its prompt (None when the prompt names no motion):
    direction and speed agreement, the measured velocity, and the track."""
    from vsynth.toy.world import parse_motion

    asked = parse_motion(prompt)
    if asked is None:
        return None
    scale = (size or frames.shape[2]) / 64
    speed = asked["speed"] * scale
    track = object_track(frames, asked["colour"])
    vx, vy, _ = track_velocity(track)
    return {
        "motion": asked["motion"],
        "direction_agreement": direction_agreement(frames, asked["motion"], asked["colour"]),
        "speed_agreement": speed_agreement(frames, speed if asked["motion"] != "growing" else 0.0, asked["colour"]) if asked["motion"] != "growing" else None,
        "velocity": [None if np.isnan(vx) else round(vx, 3), None if np.isnan(vy) else round(vy, 3)],
        "track": [[None if np.isnan(v) else round(float(v), 2) for v in row[:2]] for row in track],
    }

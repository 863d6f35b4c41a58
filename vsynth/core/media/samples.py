"""A small procedural sample clip: what the tests, plugin authors' tests (through :mod:`vsynth.testing`)
and the web UI's "sample video" run on, without shipping a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sample_frames(frames: int = 3, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 (F, H, W, 3): a red disc and a blue square moving over a gradient (clear edges for control maps)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        frame = np.stack([170 + 60 * x / width, 185 + 50 * y / height, 225 - 45 * x / width], axis=-1)
        disc = (x - width * (0.2 + 0.6 * t)) ** 2 + (y - height / 2) ** 2 <= (min(height, width) / 7) ** 2
        square = (np.abs(x - width * (0.8 - 0.6 * t)) <= width / 9) & (np.abs(y - height * (0.2 + 0.6 * t)) <= height / 9)
        frame[disc] = (225, 50, 45)
        frame[square] = (35, 60, 200)
        out.append(frame)
    return np.stack(out).round().clip(0, 255).astype(np.uint8)


def write_sample_video(path: str | Path, frames: int = 16, height: int = 64, width: int = 64, fps: float = 8.0) -> Path:
    """Write :func:`sample_frames` as an mp4 at ``path`` and return it."""
    from vsynth.core.media.video import write_mp4

    write_mp4(path, sample_frames(frames, height, width), fps)
    return Path(path)

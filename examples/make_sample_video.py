"""Render ``examples/shapes.mp4``: the small, deterministic sample clip used by examples and tests.

A red circle and a blue square glide across a soft gradient, overlapping halfway through; their hard
edges give Canny and depth-style conditions clear structure while the background stays smooth.
256x256, 32 frames at 8 fps (enough for the default 8 frames at stride 4), H.264, a few tens of KB.

Regenerate with::

    python examples/make_sample_video.py

A longer clip of the same motion, e.g. for windowed runs of many frames::

    python examples/make_sample_video.py --frames 128 --out long.mp4
"""

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

SIZE = 256
FRAMES = 32
FPS = 8
OUTPUT = Path(__file__).with_name("shapes.mp4")
CIRCLE_RADIUS = 36


def circle_center(t: float) -> tuple[float, float]:
    """The red circle's centre (x, y) in pixels at time ``t``: left to right along a wave."""
    return 48 + 160 * t, 128 + 56 * np.sin(2 * np.pi * t)


def render_frame(t: float) -> np.ndarray:
    """One RGB uint8 frame at time ``t`` in [0, 1]."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    frame = np.stack([170 + 60 * x, 185 + 50 * y, 225 - 45 * x], axis=-1)  # pale, smooth gradient

    cx, cy = circle_center(t)
    circle = (x * (SIZE - 1) - cx) ** 2 + (y * (SIZE - 1) - cy) ** 2 <= CIRCLE_RADIUS**2
    frame[circle] = (225, 50, 45)

    sx, sy = 200 - 150 * t, 40 + 150 * t  # square: top right to bottom left, drawn over the circle
    square = (np.abs(x * (SIZE - 1) - sx) <= 28) & (np.abs(y * (SIZE - 1) - sy) <= 28)
    frame[square] = (35, 60, 200)
    return frame.round().clip(0, 255).astype(np.uint8)


def write(path: Path, frames: np.ndarray) -> None:
    """H.264 at FPS, small and widely playable."""
    iio.imwrite(
        path,
        frames,
        plugin="FFMPEG",
        fps=FPS,
        codec="libx264",
        pixelformat="yuv420p",
        output_params=["-crf", "20", "-movflags", "+faststart"],
        quality=None,
    )
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB, {len(frames)} frames of {SIZE}x{SIZE} at {FPS} fps)")


def main() -> None:
    parser = argparse.ArgumentParser(description="Render the sample clip.")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"frames (default {FRAMES})")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"where to write it (default {OUTPUT.name} beside this script)")
    args = parser.parse_args()
    write(args.out, np.stack([render_frame(i / (args.frames - 1)) for i in range(args.frames)]))


if __name__ == "__main__":
    main()

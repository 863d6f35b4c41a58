"""Render ``examples/shapes_mask.mp4``: the inpainting mask that goes with ``examples/shapes.mp4``.

White (regenerate) on a disc that follows the red circle of ``make_sample_video.py``, 8 pixels wider
than it so that the circle's anti-aliased edge is regenerated too; black elsewhere. Same size, frame
count and rate as the clip, so ``--mask`` reads it frame for frame with the video.

Regenerate with::

    python examples/make_sample_mask.py
"""

from pathlib import Path

import numpy as np
from make_sample_video import CIRCLE_RADIUS, FRAMES, SIZE, circle_center, write

RADIUS = CIRCLE_RADIUS + 8  # dilated
OUTPUT = Path(__file__).with_name("shapes_mask.mp4")


def render_mask(t: float) -> np.ndarray:
    """One RGB uint8 mask frame at time ``t`` in [0, 1]: a disc on the circle's path."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cx, cy = circle_center(t)
    disc = (x - cx) ** 2 + (y - cy) ** 2 <= RADIUS**2
    return np.repeat(np.where(disc, 255, 0).astype(np.uint8)[..., None], 3, axis=-1)


def main() -> None:
    write(OUTPUT, np.stack([render_mask(i / (FRAMES - 1)) for i in range(FRAMES)]))


if __name__ == "__main__":
    main()

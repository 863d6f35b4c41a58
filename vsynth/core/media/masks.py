"""Inpainting and outpainting masks: uint8 (F, H, W), 255 where frames are regenerated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsynth.core.media.video import IMAGE_EXTENSIONS, read_image, read_video
from vsynth.errors import VsynthInputError, shorten

# BIVDiff's outpainting: "horizontal" regenerates the top and bottom quarter, "vertical" the left and
# right quarter (REFERENCE.md). As margins: (top, right, bottom, left) fractions of the frame.
OUTPAINT_PRESETS = {"horizontal": (0.25, 0.0, 0.25, 0.0), "vertical": (0.0, 0.25, 0.0, 0.25)}


def parse_outpaint(value: str) -> tuple[float, float, float, float]:
    """``horizontal``, ``vertical`` or explicit margins ``TOP,RIGHT,BOTTOM,LEFT`` as fractions in [0, 0.5)."""
    if value in OUTPAINT_PRESETS:
        return OUTPAINT_PRESETS[value]
    try:
        margins = tuple(float(part) for part in value.split(","))
    except ValueError:
        margins = ()
    if len(margins) != 4 or not all(0 <= m < 0.5 for m in margins) or not any(margins):
        raise VsynthInputError(
            f"--outpaint '{shorten(value)}': use horizontal, vertical or TOP,RIGHT,BOTTOM,LEFT fractions in [0, 0.5), at least one "
            "above 0, e.g. 0.25,0,0.25,0"
        )
    return margins


def outpaint_mask(margins: tuple[float, float, float, float], frames: int, height: int, width: int) -> np.ndarray:
    top, right, bottom, left = (round(m * size) for m, size in zip(margins, (height, width, height, width)))
    if not any((top, right, bottom, left)):
        shown = ",".join(f"{m:g}" for m in margins)
        raise VsynthInputError(f"--outpaint {shown}: under one pixel at {width}x{height}, so nothing would be outpainted; widen a margin")
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:top] = 255
    mask[height - bottom :] = 255
    mask[:, :left] = 255
    mask[:, width - right :] = 255
    return np.repeat(mask[None], frames, axis=0)


def is_still(path: str | Path) -> bool:
    """A single image file as a mask: the same region in every frame (a logo, a watermark, a fixed object)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def read_mask(path: str | Path, *, frames: int, stride: int, size: tuple[int, int]) -> np.ndarray:
    """A mask video, or one image for every frame, resized to the run's size like the source; white (> 127) = regenerate."""
    if is_still(path):
        still = _alpha_drawn(path, size)
        still = read_image(path, size, fix="give a PNG or JPEG mask")[None] if still is None else still[None]
        mask = np.repeat(_binary(still), frames, axis=0)
    else:
        mask = _binary(read_video(path, frames=frames, stride=stride, size=size).frames)
    if not mask.any():
        raise VsynthInputError(
            f"--mask {path} is black everywhere at {size[1]}x{size[0]}, so nothing would be regenerated: "
            "white (above 127) marks what is regenerated"
        )
    return mask


def _alpha_drawn(path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
    """A mask drawn as transparency (one colour everywhere, the region in the alpha channel), as the alpha; else None."""
    from PIL import Image

    from vsynth.core.media.video import _open_image

    try:
        with _open_image(Path(path).expanduser()) as image:  # its size guard: a decompression bomb is one line
            if "A" not in image.getbands() and "transparency" not in image.info:
                return None
            rgba = np.asarray(image.convert("RGBA"))
    except OSError:
        return None  # read_image says why
    if not (rgba[..., :3] == rgba[:1, :1, :3]).all() or (rgba[..., 3] == rgba[0, 0, 3]).all():
        return None
    alpha = np.asarray(Image.fromarray(rgba[..., 3]).resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return np.repeat(alpha[..., None], 3, axis=-1)


def _binary(frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W): 255 where the frames are white (> 127), else 0."""
    return np.where(frames.mean(axis=-1) > 127, 255, 0).astype(np.uint8)

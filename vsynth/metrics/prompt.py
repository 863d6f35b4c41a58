"""Prompt adherence in the toy world: are the shapes the prompted colours, and the background the prompted one?"""

from __future__ import annotations

import numpy as np

from vsynth.toy.world import NAMED_COLOURS, background_image, nearest_colour_names


def colour_adherence(frames: np.ndarray, masks: np.ndarray, colours: list[str]) -> float:
    """Share of ground-truth shape pixels whose nearest named colour is the colour prompted for that shape.

    ``masks`` bool (F, S, H, W), one per shape, ``colours`` the prompted colour of each shape.
    """
    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames, names)
    hits = total = 0
    for s, colour in enumerate(colours):
        mask = masks[:, s]
        hits += int((nearest[mask] == names.index(colour)).sum())
        total += int(mask.sum())
    return hits / total if total else float("nan")


def background_adherence(frames: np.ndarray, masks: np.ndarray, background: str, *, tolerance: float = 40.0) -> float:
    """Share of background pixels (outside every shape) within ``tolerance`` (RGB distance) of the prompted background."""
    expected = background_image(background, frames.shape[1], frames.shape[2]).astype(np.float32)  # a run's size, square or not
    outside = ~masks.any(axis=1)  # (F, H, W)
    distance = np.linalg.norm(frames.astype(np.float32) - expected[None], axis=-1)
    return float((distance[outside] <= tolerance).mean()) if outside.any() else float("nan")


def colour_masks(frames: np.ndarray, colours: list[str]) -> np.ndarray:
    """bool (F, S, H, W): the pixels whose nearest named colour is each of ``colours``.

    Where a video has no ground truth (a text-to-video result), this is how the toy world finds its
    shapes: the palette is far from every background.
    """
    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames, names)
    return np.stack([nearest == names.index(colour) for colour in colours], axis=1)


def detected_colour_adherence(frames: np.ndarray, colours: list[str], background: str) -> float:
    """Share of the non-background pixels whose nearest named colour is one of the prompted ``colours``.

    Needs no ground truth: 1 when everything that is not background has a prompted colour, lower
    when shapes take other colours (or the background is not the prompted one).
    """
    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames, names)
    backgrounds = [names.index(b) for b in (("white", "black", "gray") if background == "gradient" else (background,))]
    foreground = ~np.isin(nearest, backgrounds)
    if not foreground.any():
        return 0.0
    return float(np.isin(nearest[foreground], [names.index(c) for c in colours]).mean())

"""The learned toy world: a procedural video generator with ground truth, and small real-architecture
diffusers models trained on it (``vsynth.toy.train``).  Import-light: no torch at import time."""

from .world import (
    BACKGROUNDS,
    COLOURS,
    PALETTE,
    SHAPES,
    VOCABULARY,
    WORDS,
    Clip,
    caption_of,
    make_clip,
    words_outside_vocabulary,
    write_examples,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "PALETTE",
    "SHAPES",
    "VOCABULARY",
    "WORDS",
    "Clip",
    "caption_of",
    "make_clip",
    "words_outside_vocabulary",
    "write_examples",
]

"""Frame quality in the toy world: does a classifier trained on the world's frames see what the prompt asked for?

The classifier (shipped with the toy weights as ``classifier``; trained by ``vsynth toy train``
on single-shape frames with noise and blur, 100% held-out accuracy on clean frames) names a
frame's shape, colour and background. A generated frame counts as a hit when every attribute
the prompt names is what the classifier sees: a frame that is noise, a smear or the wrong shape
misses. It only reads single-shape 64x64 frames (others are resized to 64x64).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from vsynth.toy.world import BACKGROUNDS, COLOURS, SHAPES

CLASSIFIER_SIZE = 64


def classifier_net():
    """The untrained network: three stride-2 conv blocks, global average and max pooling, one linear head per attribute."""
    import torch
    from torch import nn

    class ShapeColourNet(nn.Module):
        """For a single-shape 64x64 frame: shape (3), colour (6) and background (4) logits."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                nn.Conv2d(64, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
            )  # fmt: skip
            self.head = nn.Linear(128, len(SHAPES) + len(COLOURS) + len(BACKGROUNDS))

        def forward(self, x):  # x: (B, 3, H, W) in [-1, 1]
            f = self.features(x)
            out = self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))
            a, b = len(SHAPES), len(SHAPES) + len(COLOURS)
            return out[:, :a], out[:, a:b], out[:, b:]

    return ShapeColourNet()


@cache
def shipped_classifier():
    """The shipped classifier in float32, in eval mode; None when the toy weights lack it."""
    from vsynth.toy.shipped import WEIGHTS_DIR, toy_models

    if "classifier" not in toy_models():
        return None
    from safetensors.torch import load_file

    net = classifier_net()
    net.load_state_dict({k: v.float() for k, v in load_file(str(WEIGHTS_DIR / "classifier" / "model.safetensors")).items()})
    return net.eval()


def parse_toy_subject(prompt: str) -> tuple[str, str, str | None] | None:
    """(shape, colour, background or None) of a prompt naming exactly one toy shape and one colour, else None."""
    words = re.findall(r"[a-z]+", prompt.lower())
    shapes = [w for w in words if w in SHAPES]
    colours = [w for w in words if w in COLOURS]
    if len(shapes) != 1 or len(colours) != 1:
        return None
    background = next((w for w, after in zip(words, words[1:]) if after == "background" and w in BACKGROUNDS), None)
    return shapes[0], colours[0], background


def classify(frames: np.ndarray, net=None) -> dict[str, list[str]]:
    """The classifier's shape, colour and background for each uint8 frame (F, H, W, 3)."""
    import cv2
    import torch

    net = net or shipped_classifier()
    if frames.shape[1:3] != (CLASSIFIER_SIZE, CLASSIFIER_SIZE):
        frames = np.stack([cv2.resize(f, (CLASSIFIER_SIZE, CLASSIFIER_SIZE), interpolation=cv2.INTER_AREA) for f in frames])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        shape, colour, background = net(x)
    return {
        "shape": [SHAPES[i] for i in shape.argmax(1).tolist()],
        "colour": [COLOURS[i] for i in colour.argmax(1).tolist()],
        "background": [BACKGROUNDS[i] for i in background.argmax(1).tolist()],
    }


def classifier_accuracy(frames: np.ndarray, shape: str, colour: str, background: str | None = None, net=None) -> float:
    """Share of frames in which the classifier sees the prompted shape and colour (and background, when named)."""
    seen = classify(frames, net)
    hits = [
        s == shape and c == colour and (background is None or b == background)
        for s, c, b in zip(seen["shape"], seen["colour"], seen["background"])
    ]
    return float(np.mean(hits))

"""Ground truth beside a toy clip on disk, so that any run on it can be measured.

A toy clip is written as ``NAME.mp4`` with ``NAME.json`` beside it holding the arguments of
:func:`vsynth.toy.world.make_clip`; the clip is regenerated from them (it is deterministic), then
taken at the run's stride, frame count and size.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from vsynth.errors import GroundTruthError
from vsynth.toy.world import Clip, make_clip, make_motion_clip, write_video

SIDECAR_KEY = "vsynth_toy_clip"
MAKERS = {"make_clip": make_clip, "make_motion_clip": make_motion_clip}  # the sidecar's "generator" (default make_clip)
DEFAULT_FRAMES = inspect.signature(make_clip).parameters["frames"].default
DEFAULT_SIZE = inspect.signature(make_clip).parameters["size"].default


def save_clip(path: str | Path, seed: int, fps: int = 8, generator: str = "make_clip", **make_args) -> Clip:
    """Make a clip (``generator``: "make_clip", or "make_motion_clip" for one shape moving as its caption says), write
    it as ``path`` (mp4) and its ground truth as ``path.with_suffix('.json')``."""
    path = Path(path)
    clip = MAKERS[generator](seed, **make_args)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, clip.frames, fps=fps)
    extra = {} if generator == "make_clip" else {"generator": generator}
    path.with_suffix(".json").write_text(json.dumps({SIDECAR_KEY: {"seed": seed, **make_args}, **extra, "caption": clip.caption}, indent=2) + "\n")
    return clip


# Mean absolute difference (grey levels) between a clip's first frame and the one its sidecar describes, beyond which the
# sidecar is another clip's: H.264 at CRF 18 leaves about 1-3 on the toy's flat colours; a shape elsewhere adds ~10 or more
FIRST_FRAME_TOLERANCE = 8.0


def check_ground_truth(video: str | Path, info) -> None:
    """Check ``video``'s ground truth against the clip as probed (``info``: a
    :class:`~vsynth.core.media.video.VideoInfo`) before a run: a sidecar left from another clip, or edited,
    is refused in one line, rather than crashing the metrics after the whole run or measuring it wrongly.

    Nothing to check when ``video`` has no sidecar, or its JSON is not vsynth's (no ``vsynth_toy_clip`` key).
    """
    sidecar = _sidecar(video)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar is not None and sidecar.is_file() else None
    except (OSError, ValueError):
        return  # not JSON at all: a user's own file, never vsynth's
    if not isinstance(data, dict) or SIDECAR_KEY not in data:
        return
    args = data[SIDECAR_KEY]
    maker = MAKERS.get(data.get("generator", "make_clip"))

    def stale(why: str) -> GroundTruthError:
        return GroundTruthError(
            f"{sidecar} is not the ground truth of {video}: {why}; delete it, or write the clip again "
            "with `vsynth toy examples`"
        )

    if not isinstance(args, dict):
        raise stale(f"its {SIDECAR_KEY} must be a mapping of make_clip arguments")
    if maker is None:
        raise stale(f"unknown generator {data.get('generator')!r}: one of {', '.join(MAKERS)}")
    unknown = set(args) - set(inspect.signature(maker).parameters)
    if unknown or not isinstance(args.get("seed"), int):
        raise stale(f"unknown arguments {', '.join(sorted(unknown))}" if unknown else "it has no whole-number seed")
    defaults = inspect.signature(maker).parameters
    clip_frames, clip_size = args.get("frames", defaults["frames"].default), args.get("size", defaults["size"].default)
    if (clip_frames, clip_size, clip_size) != (info.num_frames, info.width, info.height):
        raise stale(f"it describes {clip_frames} frames of {clip_size}x{clip_size}, the clip has {info.num_frames} of {info.width}x{info.height}")
    try:
        first = maker(**args).frames[0]  # the other arguments' types and values (a toy clip is milliseconds to draw)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise stale(f"make_clip refuses its arguments ({type(exc).__name__}: {exc})") from None
    from vsynth.core.media.video import read_video

    shown = read_video(video, frames=1).frames[0]
    difference = float(np.abs(shown.astype(np.float32) - first.astype(np.float32)).mean())
    if difference > FIRST_FRAME_TOLERANCE:  # another clip's sidecar, or an edited one: shapes, colours or background elsewhere
        raise stale(f"the first frame it describes differs from the clip's by {difference:.0f} grey levels on average "
                    f"(the encoding's own error is a few)")


def _sidecar(video: str | Path) -> Path | None:
    """The ground-truth file beside a clip: a folder of frames named '.' is the folder it names (None for '/')."""
    path = Path(os.path.abspath(Path(video).expanduser()))  # '.' and '..' named, links kept (the sidecar sits beside the link)
    return path.with_suffix(".json") if path.name else None


def load_ground_truth(video: str | Path, *, frames: int, stride: int, size: tuple[int, int]) -> Clip | None:
    """The ground truth of a toy clip at a run's frames, stride and (height, width); None if ``video`` has none.

    A run checks it first, with :func:`check_ground_truth`.
    """
    sidecar = _sidecar(video)
    if sidecar is None or not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
        args, maker = data[SIDECAR_KEY], MAKERS[data.get("generator", "make_clip")]
    except (ValueError, KeyError, TypeError):
        return None
    clip = maker(**args)
    return resample(clip, frames=frames, stride=stride, size=size)


def resample(clip: Clip, *, frames: int, stride: int, size: tuple[int, int]) -> Clip:
    """The clip's frames 0, stride, 2 stride, ... (``frames`` of them), scaled to ``size`` (height, width)."""
    import cv2

    index = np.arange(frames) * stride
    height, width = size
    source = clip.frames.shape[1]
    masks = clip.masks[index]
    images = clip.frames[index]
    if (height, width) != (source, source):
        images = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in images])
        f, s = masks.shape[:2]
        flat = masks.reshape(f * s, source, source).astype(np.uint8)
        masks = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in flat]).reshape(f, s, height, width) > 0
    scale = np.array([width / source, height / source])
    return replace(
        clip,
        frames=images,
        masks=masks,
        positions=clip.positions[index] * scale,
        velocities=clip.velocities[index] * scale * stride,
    )

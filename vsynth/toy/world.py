"""The toy world: seeded procedural clips of coloured shapes moving with constant velocity.

numpy only.  Every clip is fully determined by its seed (and the keyword arguments), and comes with
its ground truth: per-shape visible masks, centre positions and velocities, and a caption built from
a small closed vocabulary (``VOCABULARY``), e.g. "a red circle and a blue square on a white background".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Well-separated saturated colours (no two closer than ~170 in RGB distance), none of them a background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 40),
    "blue": (30, 60, 230),
    "yellow": (245, 220, 20),
    "purple": (200, 40, 210),
    "cyan": (20, 205, 215),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

# Plain backgrounds; "gradient" is a vertical dark-to-light grey ramp.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
BACKGROUNDS: tuple[str, ...] = ("white", "black", "gray", "gradient")
GRADIENT_RANGE = (40, 215)  # grey level at the top and at the bottom of a gradient background

FUNCTION_WORDS: tuple[str, ...] = ("a", "an", "and", "on", "background", "the")
# Edit words (for an InstructPix2Pix-style model): "make the circle green", "turn the square into a circle".
EDIT_WORDS: tuple[str, ...] = ("make", "turn", "into", "change", "to")
# Motion words: "a red circle moving left on a white background", "a blue square growing quickly on ...".
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
MOTIONS: tuple[str, ...] = DIRECTIONS + ("growing",)
SPEED_WORDS: dict[str, float] = {"slowly": 2.0, "quickly": 6.0}  # pixels per frame at 64x64; unnamed: DEFAULT_SPEED
DEFAULT_SPEED = 4.0
DIRECTION_VECTORS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (x, y), y down

VOCABULARY: dict[str, tuple[str, ...]] = {
    "shapes": SHAPES,
    "colours": COLOURS,
    "backgrounds": BACKGROUNDS,
    "function_words": FUNCTION_WORDS,
    "edits": EDIT_WORDS,
    "motions": MOTIONS,
    "speeds": tuple(SPEED_WORDS),
}

# Every word the toy models know, in a fixed order (the tokenizer's word ids follow it).
WORDS: tuple[str, ...] = tuple(dict.fromkeys(SHAPES + COLOURS + BACKGROUNDS + FUNCTION_WORDS + EDIT_WORDS + ("shape", "shapes", "moving") + MOTIONS + tuple(SPEED_WORDS)))

# Colour distances, used to pick the nearest named colour of a pixel.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {**PALETTE, **BACKGROUND_COLOURS}


def words_outside_vocabulary(prompt: str) -> list[str]:
    """The words of ``prompt`` the toy models cannot follow (lower-cased, in order, without repeats)."""
    words = re.findall(r"[a-z]+", prompt.lower())
    known = set(WORDS)
    return list(dict.fromkeys(w for w in words if w not in known))


def caption_of(shapes: list[tuple[str, str]], background: str) -> str:
    """"a red circle and a blue square on a white background" for [("circle", "red"), ("square", "blue")]."""
    parts = [f"a {colour} {shape}" for shape, colour in shapes]
    return " and ".join(parts) + f" on a {background} background"


@dataclass
class Clip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    masks: np.ndarray  # (F, S, H, W) bool, visible pixels of each shape (later shapes drawn on top)
    positions: np.ndarray  # (F, S, 2) float, shape centres (x, y) in pixels
    velocities: np.ndarray  # (F, S, 2) float, per-frame velocity (x, y) in pixels/frame (sign flips at bounces)
    shapes: list[tuple[str, str]]  # [(shape, colour), ...] in drawing and caption order
    sizes: list[float]  # radius (half side) of each shape, pixels
    background: str
    caption: str
    seed: int = 0
    extra: dict = field(default_factory=dict)


def background_image(background: str, size: int, width: int | None = None) -> np.ndarray:
    """The background alone, ``size`` high and ``width`` (default: ``size``) wide; a gradient runs top to bottom."""
    width = size if width is None else width
    if background == "gradient":
        top, bottom = GRADIENT_RANGE
        ramp = np.linspace(top, bottom, size, dtype=np.float32)
        img = np.repeat(ramp[:, None], width, axis=1)
        return np.repeat(np.round(img)[..., None], 3, axis=2).astype(np.uint8)
    return np.broadcast_to(np.array(BACKGROUND_COLOURS[background], np.uint8), (size, width, 3)).copy()


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Hard-edged mask of a shape centred at (cx, cy) with radius / half-side ``r``."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if shape == "square":
        s = r * 0.886  # same area as the circle
        return (np.abs(xs - cx) <= s) & (np.abs(ys - cy) <= s)
    if shape == "triangle":
        # Upward equilateral triangle inscribed in a circle of radius 1.4 r (about 80% of the circle's area).
        R = r * 1.4
        pts = [(cx, cy - R), (cx - R * 0.866, cy + R * 0.5), (cx + R * 0.866, cy + R * 0.5)]
        sides = [(x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1])]
        return np.all([d >= 0 for d in sides], axis=0) | np.all([d <= 0 for d in sides], axis=0)
    raise ValueError(f"unknown shape {shape!r}")


def render(shapes, positions, sizes, background: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame and its (S, H, W) visible masks."""
    img = background_image(background, size)
    full = [shape_mask(shape, x, y, r, size) for (shape, _), (x, y), r in zip(shapes, positions, sizes)]
    visible = []
    for i, m in enumerate(full):
        v = m.copy()
        for later in full[i + 1 :]:
            v &= ~later
        visible.append(v)
    for (_, colour), m in zip(shapes, full):
        img[m] = PALETTE[colour]
    return img, np.stack(visible) if visible else np.zeros((0, size, size), bool)


def make_clip(
    seed: int,
    frames: int = 8,
    size: int = 64,
    n_shapes: int | None = None,
    shapes: list[tuple[str, str]] | None = None,
    background: str | None = None,
    min_radius: float | None = None,
    max_radius: float | None = None,
    min_speed: float = 1.0,
    max_speed: float = 3.0,
) -> Clip:
    """A seeded clip; sizes and speeds scale with ``size`` (the defaults are for 64x64)."""
    rng = np.random.default_rng(seed)
    scale = size / 64
    lo = (8.0 if min_radius is None else min_radius) * scale
    hi = (14.0 if max_radius is None else max_radius) * scale
    if background is None:
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    if shapes is None:
        n = int(rng.integers(1, 4)) if n_shapes is None else n_shapes
        colours = rng.choice(len(COLOURS), size=n, replace=False)  # no two shapes of one colour
        shapes = [(SHAPES[rng.integers(len(SHAPES))], COLOURS[c]) for c in colours]
    n = len(shapes)
    sizes = [float(rng.uniform(lo, hi)) for _ in range(n)]
    for _attempt in range(30):  # start without heavy overlaps (shapes may still cross later)
        pos = np.array([[rng.uniform(r, size - r), rng.uniform(r, size - r)] for r in sizes], np.float64).reshape(n, 2)
        if all(np.linalg.norm(pos[i] - pos[j]) >= 0.9 * (sizes[i] + sizes[j]) for i in range(n) for j in range(i)):
            break
    speed = rng.uniform(min_speed, max_speed, n) * scale
    angle = rng.uniform(0, 2 * np.pi, n)
    vel = np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=1).reshape(n, 2)

    out_frames, out_masks, out_pos, out_vel = [], [], [], []
    for _ in range(frames):
        img, masks = render(shapes, pos, sizes, background, size)
        out_frames.append(img)
        out_masks.append(masks)
        out_pos.append(pos.copy())
        out_vel.append(vel.copy())
        pos = pos + vel
        for i, r in enumerate(sizes):  # bounce off the borders (reflect the overshoot)
            for axis in (0, 1):
                if pos[i, axis] < r:
                    pos[i, axis] = 2 * r - pos[i, axis]
                    vel[i, axis] = -vel[i, axis]
                elif pos[i, axis] > size - r:
                    pos[i, axis] = 2 * (size - r) - pos[i, axis]
                    vel[i, axis] = -vel[i, axis]
    return Clip(
        frames=np.stack(out_frames),
        masks=np.stack(out_masks).reshape(frames, n, size, size),
        positions=np.stack(out_pos).reshape(frames, n, 2),
        velocities=np.stack(out_vel).reshape(frames, n, 2),
        shapes=list(shapes),
        sizes=sizes,
        background=background,
        caption=caption_of(list(shapes), background),
        seed=seed,
    )


def nearest_colour_names(pixels: np.ndarray, names: tuple[str, ...] | None = None) -> np.ndarray:
    """Index into ``names`` (default: all named colours) of the nearest named colour of each RGB pixel."""
    names = tuple(NAMED_COLOURS) if names is None else names
    table = np.array([NAMED_COLOURS[n] for n in names], np.float32)
    d = ((pixels.reshape(-1, 1, 3).astype(np.float32) - table[None]) ** 2).sum(-1)
    return d.argmin(-1).reshape(pixels.shape[:-1])


def colour_fidelity(frames: np.ndarray, clip: Clip) -> float:
    """Share of ground-truth shape pixels whose nearest named colour (palette + plain backgrounds) is the shape's colour."""
    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames)
    hits = total = 0
    for s, (_, colour) in enumerate(clip.shapes):
        m = clip.masks[:, s]
        hits += int((nearest[m] == names.index(colour)).sum())
        total += int(m.sum())
    return hits / max(total, 1)


def motion_caption(shape: str, colour: str, motion: str, background: str, speed: str | None = None) -> str:
    """"a red circle moving left on a white background"; "a blue square growing quickly on a black background"."""
    verb = "growing" if motion == "growing" else f"moving {motion}"
    return f"a {colour} {shape} {verb}{' ' + speed if speed else ''} on a {background} background"


def parse_motion(prompt: str) -> dict | None:
    """What a motion prompt asks for: {"motion", "speed" (px/frame at 64x64), "colour", "shape"}; None without a motion word."""
    words = re.findall(r"[a-z]+", prompt.lower())
    motion = next((w for w in words if w in MOTIONS), None)
    if motion is None:
        return None
    speed = next((SPEED_WORDS[w] for w in words if w in SPEED_WORDS), DEFAULT_SPEED)
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return {"motion": motion, "speed": speed, "colour": colour, "shape": shape}


def make_motion_clip(
    seed: int,
    frames: int = 9,
    size: int = 64,
    shape: str | None = None,
    colour: str | None = None,
    motion: str | None = None,
    background: str | None = None,
    speed: str | None = None,
    motions: tuple[str, ...] = MOTIONS,
    backgrounds: tuple[str, ...] = BACKGROUNDS,
    across: float | None = None,
) -> Clip:
    """One shape that moves the prompted way (or grows) at a constant, prompted speed, and its caption saying so.

    A moving shape starts in the trailing part of the frame (it crosses the frame, never bounces) at a
    random position across the motion (``across``, a fraction of the frame, fixes it); a growing one starts small near the centre. The ground truth
    (masks, centre positions, velocities, and ``extra``: motion, speed, radii per frame) is exact.
    """
    rng = np.random.default_rng(seed)
    scale = size / 64
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or COLOURS[rng.integers(len(COLOURS))]
    motion = motion or motions[rng.integers(len(motions))]
    background = background or backgrounds[rng.integers(len(backgrounds))]
    if speed is not None and speed not in SPEED_WORDS:
        raise ValueError(f"unknown speed {speed!r}: one of {', '.join(SPEED_WORDS)}")
    px = (SPEED_WORDS[speed] if speed else DEFAULT_SPEED) * scale
    if motion == "growing":
        r0 = rng.uniform(4.0, 6.0) * scale
        growth = px / 2  # the radius grows by half the speed per frame
        radii = [min(r0 + growth * t, size / 2 - 1) for t in range(frames)]
        centre = np.array([rng.uniform(size * 0.4, size * 0.6), rng.uniform(size * 0.4, size * 0.6)])
        pos = np.repeat(centre[None], frames, 0)
        vel = np.zeros((frames, 2))
    elif motion in DIRECTION_VECTORS:
        r = float(rng.uniform(7.0, 10.0) * scale)
        radii = [r] * frames
        d = np.array(DIRECTION_VECTORS[motion], np.float64)
        travel = px * (frames - 1)
        axis = 0 if d[0] else 1
        start = np.zeros(2)
        # along the motion: start so that the whole path stays inside the frame when it can, else centred on it
        room = size - 2 * r - travel
        along = r + (rng.uniform(0, room) if room > 0 else room / 2)
        start[axis] = along if d[axis] > 0 else size - along
        start[1 - axis] = rng.uniform(r, size - r) if across is None else float(np.clip(across * size, r, size - r))
        pos = start[None] + d[None] * px * np.arange(frames)[:, None]
        vel = np.repeat((d * px)[None], frames, 0)
    else:
        raise ValueError(f"unknown motion {motion!r}: one of {', '.join(MOTIONS)}")
    out_frames, out_masks = [], []
    for t in range(frames):
        img, masks = render([(shape, colour)], pos[t : t + 1], [radii[t]], background, size)
        out_frames.append(img)
        out_masks.append(masks)
    return Clip(
        frames=np.stack(out_frames),
        masks=np.stack(out_masks).reshape(frames, 1, size, size),
        positions=pos.reshape(frames, 1, 2).astype(np.float64),
        velocities=vel.reshape(frames, 1, 2).astype(np.float64),
        shapes=[(shape, colour)],
        sizes=[float(radii[0])],
        background=background,
        caption=motion_caption(shape, colour, motion, background, speed),
        seed=seed,
        extra={"motion": motion, "speed": px, "radii": [float(x) for x in radii]},
    )


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> None:
    import imageio.v2 as imageio

    imageio.mimwrite(str(path), list(frames), fps=fps, macro_block_size=1, codec="libx264", quality=9)


def write_examples(directory: str | Path, count: int = 4, frames: int = 16, size: int = 64, seed: int = 0) -> list[Path]:
    """Write ``count`` sample clips as mp4 (and their captions as .txt) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        clip = make_clip(seed + i, frames=frames, size=size, n_shapes=1 + i % 3)
        path = directory / f"toy_{size}px_{i}.mp4"
        write_video(path, clip.frames)
        (directory / f"toy_{size}px_{i}.txt").write_text(clip.caption + "\n")
        written.append(path)
    return written

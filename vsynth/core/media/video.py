"""Video input and output: read clips into uint8 frame arrays, write MP4/GIF, and draw comparison grids.

Frames are always numpy ``uint8`` arrays of shape ``(F, H, W, 3)`` in RGB order, whatever the source
(MP4 and other ffmpeg formats, animated GIF, or a folder of images). Every failure the user can cause
raises :class:`~vsynth.errors.VideoError` with one line that names the path and says what to do, so
no ffmpeg or Pillow traceback reaches the user for bad input. This module never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageSequence

from vsynth.errors import VideoError


def _not_rotation(record: logging.LogRecord) -> bool:
    """imageio-ffmpeg warns, on stderr and past --quiet, that a phone video's frames (turned upright by ffmpeg, as
    its rotation metadata says) are not the size its stream stores: that is the rotation done, not a fault."""
    return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_not_rotation)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

_GRID_GAP = 4  # pixels between grid cells and around the grid
# The most pixels a source frame may have (8192 x 8192, above 8K video): checked from a file's header before
# any frame is decoded, since a few-KB PNG or GIF can claim 20000 x 20000 (a decompression bomb), and
# below Pillow's own warning (89 M pixels) and refusal (179 M pixels).
MAX_FRAME_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a source without decoding it into memory."""

    path: Path
    num_frames: int
    fps: float | None
    width: int
    height: int


@dataclass(frozen=True)
class Video:
    """Frames as returned by :func:`read_video`.

    ``fps`` is the rate of these frames (the source rate divided by the stride), so writing them
    back at ``fps`` keeps the clip's real-time speed; ``None`` when the source has no rate (images).
    """

    frames: np.ndarray
    fps: float | None


def probe_video(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a readable video or image folder and count its frames.

    Meant to run before any model is loaded, so that a bad input fails in a second rather than
    after minutes of loading weights. Video files are decoded once by ffmpeg (without copying
    frames into Python): container metadata often misstates the frame count, and the count must
    agree exactly with what :func:`read_video` will return.
    """
    path = _source_path(path)
    if path.is_dir():
        files = _image_files(path)
        height, width, _ = _load_image(files[0]).shape
        return VideoInfo(path, len(files), None, width, height)
    if path.suffix.lower() == ".gif":
        with _open_gif(path) as gif:
            return VideoInfo(path, sum(1 for _ in _gif_frames(path, gif)), _gif_fps(gif), gif.width, gif.height)
    reader = imageio_ffmpeg.read_frames(_ffmpeg_path(path))
    try:
        meta = _ffmpeg_header(path, reader)
    finally:
        reader.close()
    _check_pixels(path, *meta["size"])  # before counting the frames, which decodes them all
    try:
        num_frames, _ = imageio_ffmpeg.count_frames_and_secs(_ffmpeg_path(path))
    except Exception as err:  # ffmpeg failed to decode: corrupt or truncated file
        raise _unreadable(path) from err
    if not num_frames:
        raise VideoError(f"{path} contains no video frames: use a video with at least one frame")
    width, height = meta["size"]
    return VideoInfo(path, num_frames, meta["fps"] or None, width, height)


def round_size(height: int, width: int, multiple: int = 8) -> tuple[int, int]:
    """Round ``(height, width)`` down to multiples of ``multiple`` (at least ``multiple`` each).

    Latent diffusion models need this: the Stable Diffusion VAE downsamples by 8, and a UNet halves
    the latent again at each of its levels, so a frame size that does not divide evenly breaks the
    skip connections. Callers pass the multiple their model needs (e.g. 64 for SD-family UNets).
    Rounding down crops at most ``multiple - 1`` pixels of content instead of inventing any.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")
    return (max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple))


def read_video(
    path: str | Path,
    *,
    frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    size: tuple[int, int] | None = None,
    fewer: str = "lower --frames or --stride",
) -> Video:
    """Read frames ``start, start + stride, ...`` of a video file or an image folder; ``fewer`` is what the error
    for a source with fewer than ``frames`` tells the caller to do (a run's flags by default).

    ``frames`` is how many to return (``None``: all that the source has); ``size`` is an exact
    ``(height, width)`` to resize every frame to with Lanczos filtering (callers round it first,
    see :func:`round_size`). Decoding stops as soon as enough frames are taken, so reading a few
    frames from the start of a long clip stays fast. Images in a folder are taken in natural name
    order (``f2.png`` before ``f10.png``).
    """
    path = _source_path(path)
    if frames is not None and frames < 1:
        raise VideoError(f"cannot read {frames} frames from {path}: ask for at least 1 frame")
    if stride < 1:
        raise VideoError(f"stride {stride} is invalid for {path}: use a stride of at least 1")
    if start < 0:
        raise VideoError(f"start frame {start} is invalid for {path}: use a start of 0 or more")
    if size is not None and min(size) < 1:
        raise VideoError(f"cannot resize {path} to {size[0]}x{size[1]}: height and width must be positive")

    taken: list[np.ndarray] = []
    total = 0
    with _frame_source(path) as (fps, items, to_rgb):
        for total, item in enumerate(items, start=1):
            index = total - 1
            if index < start or (index - start) % stride:
                continue
            taken.append(_resize(to_rgb(item), size))
            if len(taken) == frames:
                break
    if frames is not None and len(taken) < frames:
        origin = f" from frame {start}" if start else ""
        raise VideoError(
            f"{path} has {total} frames; at stride {stride}{origin} that gives {len(taken)}, "
            f"fewer than the {frames} requested: {fewer}"
        )
    if not taken:
        if not total:
            raise VideoError(f"{path} contains no video frames: use a video with at least one frame")
        raise VideoError(f"{path} has {total} frames, none at or after start frame {start}: lower the start")
    if size is None and len({frame.shape for frame in taken}) > 1:
        sizes = sorted({f"{frame.shape[1]}x{frame.shape[0]}" for frame in taken})
        raise VideoError(f"the images in {path} differ in size ({', '.join(sizes[:3])}): resize them to one size")
    return Video(np.stack(taken), fps / stride if fps else None)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write ``frames`` as an H.264 MP4 (yuv420p, CRF 18) that browsers and players accept.

    yuv420p stores colour at half resolution, so H.264 needs even sizes: an odd height or width is
    padded by repeating the last row or column (the file is then one pixel larger) rather than
    letting ffmpeg fail or imageio silently rescale to a multiple of 16. Frames are padded and sent
    one at a time, so a long clip is never copied whole.
    """
    frames = _checked_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _, height, width, _ = frames.shape
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        _ffmpeg_path(path),
        (width + width % 2, height + height % 2),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-crf", "18", "-movflags", "+faststart"],
    )
    writer.send(None)  # start the generator (and ffmpeg)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(np.pad(frame, pad, mode="edge") if height % 2 or width % 2 else frame))
    finally:
        writer.close()
    if not path.is_file() or not path.stat().st_size:  # imageio-ffmpeg does not say when ffmpeg could not open the output
        raise OSError(f"ffmpeg wrote no video to {path}")


def _ffmpeg_path(path: Path) -> str:
    """``path`` as ffmpeg must be given it: absolute, since it reads a relative ``run:1/video.mp4`` as a URL
    of the protocol 'run' (and fails, or opens something else)."""
    return str(Path(path).absolute())


def write_gif(path: str | Path, frames: np.ndarray, fps: float, *, max_frames: int | None = None) -> None:
    """Write ``frames`` as an endlessly looping GIF (256-colour palette per frame).

    GIF delays are whole hundredths of a second and browsers slow down delays under 0.02 s, so the
    delay is rounded to centiseconds and clamped to at least 2. Pillow merges consecutive identical
    frames into one longer frame: playback timing is kept, the stored frame count may shrink.
    A clip longer than ``max_frames``, or faster than 50 fps (a 2 cs delay), keeps every k-th frame (the smallest k
    that fits) at fps / k, so the GIF stays small and plays the whole clip at its real speed.
    """
    frames = _checked_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    step = math.ceil(fps / 50)  # faster than a GIF's 2 cs delay: every k-th frame, so that it plays at the clip's speed
    if max_frames is not None and len(frames) > max_frames:
        step = max(step, math.ceil(len(frames) / max_frames))
    if step > 1:
        frames, fps = frames[::step], fps / step
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    delay_ms = 10 * max(2, round(100 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=delay_ms, loop=0)


def make_grid(rows: list[tuple[str, np.ndarray]], *, columns: int = 4, cell_height: int = 128) -> Image.Image:
    """Draw a labeled comparison picture: one row per ``(label, frames)``, ``columns`` frames each.

    Each row shows frames picked evenly across its length (rows of equal length show the same
    indices; a shorter row shows all its frames and leaves cells empty). Frames are scaled to
    ``cell_height`` keeping their aspect and centered in their column. The header shows the first
    row's frame indices; a row whose indices differ carries its own index in each cell's corner.
    """
    if not rows:
        raise ValueError("make_grid needs at least one row")
    rows = [(label, _checked_frames(frames)) for label, frames in rows]
    columns = min(columns, max(len(frames) for _, frames in rows))  # a 2-frame run: 2 columns, not 2 empty ones beside them
    font = ImageFont.load_default(size=max(10, cell_height // 9))
    picks = [_grid_indices(len(frames), columns) for _, frames in rows]
    cell_widths = [max(1, round(frames.shape[2] * cell_height / frames.shape[1])) for _, frames in rows]
    column_width = max(cell_widths)
    text_height = font.getbbox("0123456789")[3]
    label_width = max(font.getlength(label) for label, _ in rows)
    left = _GRID_GAP + math.ceil(label_width) + 2 * _GRID_GAP
    top = text_height + 2 * _GRID_GAP
    canvas = Image.new(
        "RGB",
        (left + columns * (column_width + _GRID_GAP), top + len(rows) * (cell_height + _GRID_GAP)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for column, index in enumerate(picks[0]):
        x = left + column * (column_width + _GRID_GAP) + column_width / 2
        draw.text((x, _GRID_GAP), str(index), fill="black", font=font, anchor="mt")
    for row, ((label, frames), indices, cell_width) in enumerate(zip(rows, picks, cell_widths, strict=True)):
        y = top + row * (cell_height + _GRID_GAP)
        draw.text((_GRID_GAP, y + cell_height / 2), label, fill="black", font=font, anchor="lm")
        for column, index in enumerate(indices):
            x = left + column * (column_width + _GRID_GAP) + (column_width - cell_width) // 2
            cell = Image.fromarray(frames[index]).resize((cell_width, cell_height), Image.Resampling.LANCZOS)
            canvas.paste(cell, (x, y))
            if indices != picks[0]:
                draw.text((x + 2, y + 2), str(index), fill="white", font=font, stroke_width=1, stroke_fill="black")
    return canvas


def mean_abs_frame_difference(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames on a 0..1 scale (0 for a single frame).

    A cheap temporal-consistency figure: flicker between frames raises it, a static clip gives 0.
    Computed pair by pair to avoid a float copy of the whole clip.
    """
    frames = _checked_frames(frames)
    if len(frames) < 2:
        return 0.0
    diffs = [np.abs(b.astype(np.int16) - a).mean() for a, b in zip(frames[:-1], frames[1:], strict=True)]
    return float(np.mean(diffs) / 255.0)


# --- sources ------------------------------------------------------------------------------------


_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+:)/+")  # two letters at least: C:/ is a Windows drive


def _source_path(path: str | Path) -> Path:
    """Return ``path`` as a Path after checking it exists and has a type this module reads."""
    path = Path(path)
    if not path.exists():
        url = _URL.match(str(path))  # a Path has folded its '//' into '/'
        if url:
            raise VideoError(f"{url.group(1)}//{str(path)[url.end():]} is a URL: vsynth reads files here; download it first")
        raise VideoError(f"{path} does not exist: check the path")
    if not (path.is_file() or path.is_dir()):
        raise VideoError(f"{path} is not a regular file or a folder (a pipe or a device?): save the video to a file first")
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(f"{path} is one image: give a video, or a folder of images (one per frame, in name order)")
    if path.is_file() and path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoError(
            f"{path} has unsupported type '{path.suffix}': use a video ({', '.join(VIDEO_EXTENSIONS)}) "
            f"or a folder of images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return path


@contextlib.contextmanager
def _frame_source(path: Path) -> Iterator[tuple[float | None, Iterator[Any], Callable[[Any], np.ndarray]]]:
    """Yield ``(fps, items, to_rgb)``: a lazy iterator over every frame and its RGB decoder.

    Items are cheap handles (a file name, raw ffmpeg bytes, or a small GIF frame already in RGB
    because GIF frames are decoded by seeking anyway); only the frames that :func:`read_video`
    keeps are converted, and leaving the context stops any running decoder.
    """
    if path.is_dir():
        yield None, iter(_image_files(path)), _load_image
    elif path.suffix.lower() == ".gif":
        with _open_gif(path) as gif:
            yield _gif_fps(gif), _gif_frames(path, gif), np.asarray
    else:
        reader = imageio_ffmpeg.read_frames(_ffmpeg_path(path))  # rgb24 frames as raw bytes, after a metadata dict
        try:
            meta = _ffmpeg_header(path, reader)
            width, height = meta["size"]
            yield (
                meta["fps"] or None,
                _ffmpeg_frames(path, reader),
                lambda raw: np.frombuffer(raw, np.uint8).reshape(height, width, 3),
            )
        finally:
            reader.close()


def _ffmpeg_header(path: Path, reader: Iterator[Any]) -> dict[str, Any]:
    """Take the metadata dict (``size`` after rotation, ``fps``) that starts ``reader``."""
    try:
        return next(reader)
    except Exception as err:  # no header: not a video, or a stream ffmpeg cannot parse
        said = str(err)
        if "Stream #" in said and "Video:" not in said:  # ffmpeg read the file and listed its streams: none is video
            raise VideoError(f"{path} holds no video stream (only {_stream_kinds(said)}): give a file with video") from err
        raise _unreadable(path) from err


def _stream_kinds(ffmpeg_log: str) -> str:
    kinds = sorted({m.lower() for m in re.findall(r"Stream #\S+.*?: (Audio|Subtitle|Data|Attachment):", ffmpeg_log)})
    return " and ".join(kinds) or "other streams"


def _ffmpeg_frames(path: Path, reader: Iterator[bytes]) -> Iterator[bytes]:
    """Pass frames through from ``reader``, turning a mid-stream decoding failure into VideoError."""
    try:
        yield from reader
    except RuntimeError as err:
        raise _unreadable(path) from err


def _unreadable(path: Path) -> VideoError:
    return VideoError(
        f"{path} cannot be read as a video (corrupt, incomplete or not a video): "
        "check that it plays, or re-export it as H.264 .mp4"
    )


def _open_gif(path: Path) -> Image.Image:
    try:
        return _open_image(path)
    except OSError as err:
        raise VideoError(f"{path} cannot be read as a GIF: check that it opens, or re-export it") from err


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` (which reads the header only), refusing a frame larger than :data:`MAX_FRAME_PIXELS`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(path, f"more than {Image.MAX_IMAGE_PIXELS / 1e6:.0f} M pixels") from None
    if image.width * image.height > MAX_FRAME_PIXELS:
        image.close()
        raise _too_large(path, f"{image.width}x{image.height} pixels")
    return image


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise _too_large(path, f"{width}x{height} pixels")


def _too_large(path: Path, size: str) -> VideoError:
    return VideoError(
        f"{path} has frames of {size}, more than the {MAX_FRAME_PIXELS / 1e6:.0f} M pixels vsynth reads (a "
        "decompression bomb, or frames far larger than any model takes): scale it down first"
    )


def _gif_fps(gif: Image.Image) -> float | None:
    duration = gif.info.get("duration")
    return 1000.0 / duration if duration else None


def _gif_frames(path: Path, gif: Image.Image) -> Iterator[np.ndarray]:
    try:
        for frame in ImageSequence.Iterator(gif):
            yield _to_rgb(frame)
    except (OSError, ValueError) as err:
        raise VideoError(f"{path} is a damaged GIF (a frame failed to decode): re-export it") from err


def _image_files(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural name order; hidden files (e.g. ``._x.png``) are skipped."""
    files = [
        file
        for file in folder.iterdir()
        if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith(".") and file.is_file()
    ]
    if not files:
        raise VideoError(
            f"{folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)}): add frames or pick another folder"
        )
    return sorted(files, key=lambda file: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", file.name)])


def read_image(path: str | Path, size: tuple[int, int] | None = None, fix: str = "check the file") -> np.ndarray:
    """One image file as uint8 RGB (H, W, 3), with the same size guard and error as a folder of frames; resized to
    ``size`` (height, width) as they are; ``fix`` ends the error for an unreadable one."""
    return _resize(_load_image(Path(path).expanduser(), fix), size)


def _load_image(file: Path, fix: str = "check the file or remove it from the folder") -> np.ndarray:
    try:
        with _open_image(file) as image:
            return _to_rgb(image)
    except OSError as err:
        raise VideoError(f"{file} cannot be read as an image: {fix}") from err


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an RGB array; going through RGBA handles palette transparency, alpha is dropped.

    Grayscale of more than 8 bits (16-bit PNG depth maps: Pillow's ``I;16``, or ``I``) is scaled to 8 bits, where
    Pillow's own conversion clips every value above 255 to white."""
    sixteen = image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")  # PNG's I: 16-bit gray (old Pillow)
    if sixteen or (image.mode == "I" and np.asarray(image).max() > 255):  # another I (TIFF's 32 bits): by its values
        gray = np.clip(np.round(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGBA").convert("RGB"))


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    height, width = size
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))


def _grid_indices(num_frames: int, columns: int) -> list[int]:
    if num_frames <= columns:
        return list(range(num_frames))
    return [round(i) for i in np.linspace(0, num_frames - 1, columns)]


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    """Reject arrays that are not non-empty ``(F, H, W, 3)`` uint8: a caller bug, not a user error."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.shape[0]:
        raise ValueError(f"expected uint8 frames of shape (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}")
    return frames

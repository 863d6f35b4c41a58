"""``vsynth eval``: the registered metrics on run folders or plain videos, and comparison pictures.

A run folder (one with run.json) brings its prompt, its source video (if it is still where the run
read it), its condition maps (condition.mp4), its IDM frames and, for a control IDM, the detector
that made the condition, rebuilt from run.json to re-detect it on the output. A plain video brings
what the command line gives: ``--prompt``, ``--source``, and the ground truth of a world that claims
it (a toy clip's sidecar).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vsynth.core.host.registry import Registry
from vsynth.core.media import video as videoio
from vsynth.core.run import measure
from vsynth.errors import VideoError, VsynthInputError

RUN_VIDEOS = {"final": "video.mp4", "idm": "idm_frames.mp4", "t2v": "t2v_frames.mp4"}  # name in run.json -> file


@dataclass
class Target:
    """One thing to evaluate: a run folder or a video file, with what a metric may read about it."""

    path: Path
    videos: dict[str, np.ndarray]  # "final" first; a run folder's "idm" and "t2v" too
    sample: measure.Sample
    notes: list[str] = field(default_factory=list)  # what could not be had (a moved source video)


@dataclass
class Evaluation:
    path: Path
    result: measure.Measurement
    notes: list[str]

    def record(self) -> dict:
        r = self.result
        return {"path": str(self.path), "metrics": r.values, "skipped": r.skipped, "failed": r.failed,
                "notes": {**r.notes, **({"inputs": self.notes} if self.notes else {})}}  # fmt: skip


def load_target(
    registry: Registry, path: Path, *, prompt: str | None = None, source: Path | None = None, sample: measure.Sample
) -> Target:
    """The videos and inputs of ``path`` (a run folder or a video); ``prompt`` and ``source`` override a run's."""
    if not path.exists():
        raise VsynthInputError(f"{path} does not exist: give run folders (with run.json) or video files")
    if path.is_dir() and (path / "run.json").is_file():
        return _run_target(registry, path, prompt=prompt, source=source, sample=sample)
    if path.is_dir() and not any(p.suffix.lower() in videoio.IMAGE_EXTENSIONS for p in path.iterdir()):
        videos = sorted(p.name for p in path.iterdir() if p.suffix.lower() in videoio.VIDEO_EXTENSIONS)
        inside = f" (it holds {', '.join(videos[:3])}{', ...' if len(videos) > 3 else ''}: give one of them)" if videos else ""
        raise VsynthInputError(f"{path} is neither a run folder (no run.json) nor a folder of frames{inside}")
    frames = videoio.read_video(path).frames
    target = Target(path, {"final": frames}, measure.Sample(prompt=prompt, device=sample.device, tiny=sample.tiny, weights=sample.weights))
    size = frames.shape[1:3]
    if source is not None:
        fewer = f"--source must have a frame for each of {path}'s {len(frames)}: give the source it was made from"
        target.sample.source = videoio.read_video(source, frames=len(frames), size=size, fewer=fewer).frames
    target.sample.truth = measure.ground_truth(list(registry.worlds.values()), path, frames=len(frames), stride=1, size=size)
    return target


def _run_target(registry: Registry, folder: Path, *, prompt: str | None, source: Path | None, sample: measure.Sample) -> Target:
    try:
        record = json.loads((folder / "run.json").read_text())
        config = record["config"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VsynthInputError(f"{folder / 'run.json'} is not a vsynth run record ({type(exc).__name__}): give a run folder or a video") from None
    videos = {name: videoio.read_video(folder / file).frames for name, file in RUN_VIDEOS.items() if (folder / file).is_file()}
    if "final" not in videos:
        raise VsynthInputError(f"{folder} has run.json but no video.mp4: an unfinished or edited run folder")
    frames, size = len(videos["final"]), videos["final"].shape[1:3]
    target = Target(folder, videos, measure.Sample(prompt=prompt or config.get("prompt"), source_prompt=config.get("source_prompt"),
                                                   device=sample.device, tiny=sample.tiny, weights=sample.weights))  # fmt: skip
    recorded = record.get("input_paths", {}).get("video") or config.get("video")  # absolute since 0.2: relative ones read from here
    source = source or (Path(recorded) if recorded else None)
    own = source is not None and recorded is not None and Path(source).expanduser().absolute() == Path(recorded).expanduser().absolute()
    stride = int(config.get("stride") or 1) if own else 1  # the run's own source at its stride; another one frame by frame
    if source is not None:
        try:
            target.sample.source = videoio.read_video(source, frames=frames, stride=stride, size=size).frames
            target.videos = {**videos, "source": target.sample.source}  # measured too, as in run.json (its source column)
            target.sample.truth = measure.ground_truth(list(registry.worlds.values()), source, frames=frames, stride=stride, size=size)
        except (VideoError, OSError) as exc:
            target.notes.append(f"source video {source} unreadable, metrics that need it are skipped: {str(exc)[:120]}")
    if (folder / "condition.mp4").is_file():
        target.sample.condition = videoio.read_video(folder / "condition.mp4").frames[:frames]
        target.sample.detector = _detector(registry, record, sample)
    return target


def _detector(registry: Registry, record: dict, sample: measure.Sample) -> dict | None:
    """The run's IDM detector, rebuilt from run.json (its class, params and weights), to re-detect the condition;
    None when the IDM has no ``make_control_maps`` (or is no longer installed)."""
    idm = record.get("models", {}).get("idm")
    if not idm:
        return None
    try:
        spec = registry.model(idm["name"], "idm")
    except VsynthInputError:
        return None
    cls = spec.load_impl()
    if not hasattr(cls, "make_control_maps"):
        return None
    import torch

    params = spec.params(**idm.get("params", {}))
    maps = cls.make_control_maps(params, idm.get("weights", {}), torch.device(sample.device))
    return {"kind": getattr(cls, "kind", ""), "maps": maps, **params.model_dump()}


def evaluate(registry: Registry, targets: Sequence[Target], specs, *, named: bool = True) -> list[Evaluation]:
    """Each target measured; metrics nobody ``named`` (the default: all) are skipped when their weights cannot be had."""
    return [Evaluation(t.path, measure.measure(specs, t.videos, t.sample, registry, skip_unavailable=not named, record_failures=True), t.notes)
            for t in targets]  # fmt: skip


def csv_rows(evaluations: Sequence[Evaluation]) -> list[dict]:
    return [
        {"path": str(e.path), "video": video, "metric": metric, "value": value}
        for e in evaluations
        for metric, values in e.result.values.items()
        for video, value in values.items()
    ]


# ---------------------------------------------------------------------------- --compare

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
PANEL = (360, 200)  # width, height of one metric's chart


def compare_png(evaluations: Sequence[Evaluation], targets: Sequence[Target], out: Path, labels: Sequence[str]) -> Path:
    """One PNG: per-frame curves of every metric that has them (one line per target, final videos), above a
    strip of frames of each target side by side."""
    from PIL import Image, ImageDraw, ImageFont

    metrics = sorted({m for e in evaluations for m, curves in e.result.curves.items() if "final" in curves})
    font = ImageFont.load_default(size=12)
    columns = min(3, max(1, len(metrics)))
    rows = -(-len(metrics) // columns) if metrics else 0
    strip = videoio.make_grid([(label, t.videos["final"]) for label, t in zip(labels, targets)], columns=6, cell_height=96)
    legend_height = 20
    width = max(strip.width, columns * PANEL[0])
    canvas = Image.new("RGB", (width, legend_height + rows * PANEL[1] + strip.height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 6
    for i, label in enumerate(labels):
        draw.rectangle([x, 6, x + 10, 16], fill=COLOURS[i % len(COLOURS)])
        draw.text((x + 14, 4), label, fill="black", font=font)
        x += 24 + int(font.getlength(label))
    for k, metric in enumerate(metrics):
        left, top = (k % columns) * PANEL[0], legend_height + (k // columns) * PANEL[1]
        curves = [(i, e.result.curves[metric]["final"]) for i, e in enumerate(evaluations) if "final" in e.result.curves.get(metric, {})]
        _chart(draw, font, (left, top), metric, curves)
    canvas.paste(strip, (0, legend_height + rows * PANEL[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def axis_labels(low: float, high: float) -> tuple[str, str]:
    """The top and bottom of a chart's axis, with as few significant digits (3 to 6) as tell them apart:
    frame consistency near 100 read "100" at both ends at 3."""
    for digits in range(3, 7):
        labels = f"{high:.{digits}g}", f"{low:.{digits}g}"
        if labels[0] != labels[1]:
            break
    return labels


def _chart(draw, font, origin: tuple[int, int], title: str, curves: list[tuple[int, list[float]]]) -> None:
    """A line chart of ``curves`` (target index, values per frame) in one panel."""
    left, top = origin
    pad_l, pad_r, pad_t, pad_b = 48, 10, 20, 22
    x0, y0, x1, y1 = left + pad_l, top + pad_t, left + PANEL[0] - pad_r, top + PANEL[1] - pad_b
    draw.text((left + PANEL[0] / 2, top + 4), title, fill="black", font=font, anchor="mt")
    draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
    values = [v for _, c in curves for v in c if np.isfinite(v)]
    if not values:
        return
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    longest = max(len(c) for _, c in curves)
    high_label, low_label = axis_labels(low, high)
    draw.text((x0 - 4, y0), high_label, fill="black", font=font, anchor="rt")
    draw.text((x0 - 4, y1), low_label, fill="black", font=font, anchor="rb")
    draw.text(((x0 + x1) / 2, y1 + 4), "frame", fill="black", font=font, anchor="mt")
    for index, curve in curves:
        points = [
            (x0 + (x1 - x0) * (t / max(1, longest - 1)), y1 - (y1 - y0) * (v - low) / (high - low))
            for t, v in enumerate(curve)
            if np.isfinite(v)
        ]
        colour = COLOURS[index % len(COLOURS)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)

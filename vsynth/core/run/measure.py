"""Metrics as observers: the run pipeline and ``vsynth eval`` measure videos through the registered metric specs.

Nothing here knows a metric or a data set by name. A :class:`~vsynth.core.host.specs.MetricSpec`
says what a metric needs (prompt, source, condition, ground truth) and which weights it loads;
its implementation, a :class:`Metric`, is imported only when a measurement needs it. Ground
truth comes from the registered worlds (:class:`~vsynth.core.host.specs.WorldSpec`): each is asked
whether a source video is one of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vsynth.errors import VsynthInputError

if TYPE_CHECKING:
    from vsynth.core.host.registry import Registry
    from vsynth.core.host.specs import MetricSpec, WorldSpec

DIGITS = 4  # run.json and `vsynth eval` round every value to this many decimals


@dataclass
class Sample:
    """What a metric may read about the videos it measures, besides their frames.

    ``source`` and ``condition`` are uint8 (F, H, W, 3) at the measured videos' frames and size;
    ``detector`` describes how the condition was made (``{"kind": "canny", "low_threshold": 100,
    "high_threshold": 200}``, ``{"kind": "depth", "weights": PATH}``, ``{"kind": "pose"}``), so that a
    control metric re-detects it on the output the same way; ``truth`` is what a world returned for
    the source video (the toy world: a :class:`vsynth.toy.world.Clip` at the run's frames and size).
    """

    prompt: str | None = None
    source_prompt: str | None = None  # what the source shows, where a run edits it (--source-prompt): the source is measured against it
    source: np.ndarray | None = None
    condition: np.ndarray | None = None
    detector: dict | None = None
    truth: object = None
    device: str = "cpu"
    tiny: bool = False  # the metrics' tiny random-weight networks (offline tests), not their real weights
    weights: dict[str, str] = field(default_factory=dict)  # "metric.role" or "role" -> folder or hub id

    def has(self, need: str) -> bool:
        value = {"prompt": self.prompt, "source": self.source, "condition": self.condition, "truth": self.truth}[need]
        return bool(value) if isinstance(value, str) else value is not None


class Metric:
    """The implementation of a metric: built once per measurement with its spec and located weights, then
    called on each video. Subclass it, set ``MetricSpec.impl`` to the subclass.

    :meth:`measure` returns one number, or one per frame (or per pair of consecutive frames), whose
    mean is the metric's value and which ``vsynth eval --compare`` draws as a curve. NaN means "not
    measurable on this video" and is left out of the results.
    """

    note: str = ""  # how it measured, when that varies (which flow method): recorded beside the values
    min_frames: int = 1  # a video with fewer is not measurable by it (motion and change need 2), rather than scored 0

    def __init__(self, spec: MetricSpec, weights: dict[str, str], device: str = "cpu"):
        self.spec = spec
        self.weights = weights  # role -> folder, file or hub id, located
        self.device = device

    @classmethod
    def uses_weights(cls) -> bool:
        """Whether it loads its spec's weights here; False for a metric that falls back to a method without
        them (flow without torchvision), so that they are neither located nor required."""
        return True

    def applies(self, sample: Sample) -> str | None:
        """Why this metric cannot measure with ``sample`` beyond its declared needs (e.g. a condition no
        detector of its can remake), or None when it can."""
        return None

    def measure(self, frames: np.ndarray, sample: Sample) -> float | Sequence[float]:
        raise NotImplementedError


@dataclass
class Measurement:
    """``values[metric][video]``: the mean per video; ``curves`` the per-frame values where a metric gave them;
    ``skipped[metric]``: why a chosen metric measured nothing; ``notes[metric]``: how it measured, where an
    implementation says (e.g. which optical flow it used)."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # with keep_going: the one line of a metric that raised


def choose(registry: Registry, names: Sequence[str] | None) -> list[MetricSpec]:
    """The metric specs ``names`` selects (short or ``plugin/name``; ``default`` adds the default set; ``all``
    every metric), or the default set when ``names`` is None. Unknown names: one line."""
    if names is None:
        return [s for s in registry.metrics.values() if s.default]
    chosen: dict[str, MetricSpec] = {}
    for name in names:
        if name == "default":
            chosen.update({s.qualified_name: s for s in registry.metrics.values() if s.default})
        elif name == "all":
            chosen.update({s.qualified_name: s for s in registry.metrics.values()})
        else:
            spec = registry.metric(name)
            chosen[spec.qualified_name] = spec
    return list(chosen.values())


def parse_names(text: str | Sequence[str] | None) -> list[str] | None:
    """``--metrics a,b c`` as a list of names; None when not given; an empty list is refused."""
    if text is None:
        return None
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    if not names:
        raise VsynthInputError("--metrics is empty: name metrics (see `vsynth models --kind metric`), 'default' or 'all'")
    return names


def ground_truth(worlds: Sequence[WorldSpec], video: str | Path | None, *, frames: int, stride: int, size: tuple[int, int]):
    """The ground truth that the first of ``worlds`` (the registry's) claiming ``video`` returns, or None."""
    if video is None:
        return None
    for spec in worlds:
        truth = spec.load_impl()().truth(Path(video), frames=frames, stride=stride, size=size)
        if truth is not None:
            return truth
    return None


def check_ground_truth(registry: Registry, video: str | Path, info) -> None:
    """Each world checks a source video's ground truth before a run (a stale sidecar is one line, not a crash
    in the metrics after the whole run)."""
    for spec in registry.worlds.values():
        spec.load_impl()().check(Path(video), info)


def metric_weights(spec: MetricSpec, sample: Sample) -> dict[str, str]:
    """Each weights role of ``spec`` located: an override (``metric.role`` or ``role`` in ``sample.weights``),
    the tiny stand-in with ``sample.tiny``, else the hub id; one line when they cannot be had."""
    from vsynth.core.diffusion.weights import locate
    from vsynth.tiny import tiny_weights

    located = {}
    if spec.weights and not spec.load_impl().uses_weights():
        return located
    for w in spec.weights:
        given = sample.weights.get(f"{spec.name}.{w.role}") or sample.weights.get(w.role)
        flag = f"--metric-weights {w.role}=PATH"
        if given:
            located[w.role] = locate(w, given, flag)
        elif sample.tiny:
            if w.tiny is None:
                raise VsynthInputError(f"metric {spec.name} has no tiny form of its {w.role} weights")
            located[w.role] = str(tiny_weights(w.tiny))
        elif w.id.startswith("torchvision:"):  # torchvision's own published weights: its cache, or a download
            located[w.role] = w.id
        else:
            located[w.role] = locate(w, w.id, flag)
    return located


def measure(
    specs: Sequence[MetricSpec], videos: dict[str, np.ndarray | None], sample: Sample, registry: Registry | None = None,
    *, keep_going: bool = False, skip_unavailable: bool = False, record_failures: bool = False,
) -> Measurement:  # fmt: skip
    """Measure every video of ``videos`` (name -> uint8 (F, H, W, 3), or None) with every spec whose needs
    ``sample`` meets. A metric that compares with the source or the condition is not measured on the source.

    A metric that raises stops the measurement (a plugin's error as one line naming it), or, with
    ``keep_going`` (a run, whose video is already made), is recorded in ``failed`` and the others go on;
    ``record_failures`` (eval) does so too, but a metric whose weights cannot be had still stops it. With
    ``skip_unavailable`` (metrics nobody named), one whose weights cannot be had is skipped with the reason."""
    from vsynth.errors import WeightsUnavailableError, one_line

    result = Measurement()
    for spec in specs:
        try:
            _measure_one(spec, videos, sample, registry, result)
        except WeightsUnavailableError as exc:
            if not (skip_unavailable or keep_going):
                raise
            (result.skipped if skip_unavailable else result.failed)[spec.name] = str(exc)
        except Exception as exc:
            if not (keep_going or record_failures):
                raise
            result.values.pop(spec.name, None)
            result.curves.pop(spec.name, None)
            result.failed[spec.name] = one_line(exc)
        if spec.name not in result.values:  # how it measures (RAFT or its fallback) says nothing of a metric that did not
            result.notes.pop(spec.name, None)
    return result


def _measure_one(spec: MetricSpec, videos: dict, sample: Sample, registry: Registry | None, result: Measurement) -> None:
    """One metric on every video into ``result``."""
    from vsynth.core.host.registry import plugin_errors

    named = {name: frames for name, frames in videos.items() if frames is not None}
    missing = [need for need in spec.needs if not sample.has(need)]
    if missing:
        result.skipped[spec.name] = f"needs {', '.join(missing)}"
        return
    with plugin_errors(spec, registry):
        impl = spec.load_impl()(spec, metric_weights(spec, sample), sample.device)
        if getattr(impl, "note", ""):
            result.notes[spec.name] = impl.note
        reason = impl.applies(sample)
        if reason:
            result.skipped[spec.name] = reason
            return
        current = sample
        for name, frames in named.items():
            if name == "source" and {"source", "condition"} & set(spec.needs) or len(frames) < impl.min_frames:
                continue
            own = replace(sample, prompt=sample.source_prompt) if name == "source" and sample.source_prompt else sample
            if own is not current:  # the source of an edit, against what it shows (a red circle's motion, not the blue one's)
                current, reason = own, impl.applies(own)
                if reason:
                    continue
            value = impl.measure(frames, own)
            mean, curve = _summarize(value)
            if not math.isfinite(mean):  # NaN: not measurable; infinite: no number JSON (run.json, --json) can hold
                continue
            result.values.setdefault(spec.name, {})[name] = round(mean, DIGITS)
            if curve is not None:
                result.curves.setdefault(spec.name, {})[name] = [round(v, DIGITS) if math.isfinite(v) else None for v in curve]  # JSON has no NaN
    if spec.name not in result.values and spec.name not in result.skipped:
        short = any(len(frames) < impl.min_frames for frames in named.values())
        result.skipped[spec.name] = f"needs at least {impl.min_frames} frames" if short else "not measurable on these videos"


def _summarize(value) -> tuple[float, list[float] | None]:
    if np.ndim(value) == 0:
        return float(value), None
    curve = [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
    finite = [v for v in curve if not math.isnan(v)]
    return (float(np.mean(finite)) if finite else float("nan")), curve

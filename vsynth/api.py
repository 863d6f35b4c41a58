"""The public Python API: ``vsynth.run(...)`` for one run, ``vsynth.Session`` to keep models loaded.

Both are thin callers of the one run pipeline (:mod:`vsynth.core.run.pipeline`): the keyword
arguments are a :class:`~vsynth.core.run.config.RunConfig`, validated by ``plan_run`` before any
weights load, so bad input raises the same typed :mod:`vsynth.errors` the CLI reports in one line.
Unlike the CLI, a run writes an output folder only when ``out`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsynth.core.run.config import RunConfig, make_config
from vsynth.core.run.progress import check_display


@dataclass(repr=False)
class RunResult:
    """What one run produced."""

    frames: Any  # numpy uint8 (F, H, W, 3): the final video
    latents: Any  # torch (1, C, F, h, w): the final latent video, before decoding
    record: dict  # what run.json holds (written there when out_dir is set)
    out_dir: Path | None  # the output folder, or None when the run was not written

    def __repr__(self) -> str:
        """Shapes, models and metrics, not the tensors' and the record's thousands of values (a notebook prints it)."""
        models = ", ".join(f"{role}={m['name']}" for role, m in self.record.get("models", {}).items())
        bridge = (self.record.get("bridge") or {}).get("name")
        metrics = {k: v.get("final", v) if isinstance(v, dict) else v for k, v in self.record.get("metrics", {}).items()}
        parts = [f"frames={_shape(self.frames)}", f"latents={_shape(self.latents)}", models, f"bridge={bridge}" if bridge else "",
                 f"metrics={metrics}" if metrics else "", f"out_dir={str(self.out_dir)!r}" if self.out_dir else "out_dir=None"]
        return f"RunResult({', '.join(p for p in parts if p)})"


def _shape(array) -> str:
    shape = getattr(array, "shape", None)
    return f"{type(array).__name__}{tuple(shape)}" if shape is not None else repr(array)


class Session:
    """Runs many prompts or clips on models loaded once.

    Loading is the slow part of a real run. A Session keeps the models of its last run and reuses
    them for the next run with the same model set (names, model params, weights, device); a run
    with another set replaces them. Run jobs grouped by model set to load each set once::

        with vsynth.Session() as session:
            for prompt in prompts:
                session.run(vdm="zeroscope", prompt=prompt, tiny=True)
    """

    def __init__(self, display=None):
        # Each run's stages: None shows rich bars where a terminal or notebook can show them, True
        # anywhere, False never; or a rich Progress of the caller's.
        check_display(display)
        self.display = display
        self._loaded = None

    def run(self, *, options: dict[str, Any] | None = None, display=None, **settings) -> RunResult:
        """One run: ``settings`` are RunConfig fields (``vdm``, ``prompt``, ``idm``, ``video``, ``frames``,
        ``tiny``, ``out``...), ``options`` the models' and bridge's params (as ``-o KEY=VALUE``), ``display``
        this run's progress (as the Session's). A setting given as None is its default, as Python's convention
        has it (``seed=None`` runs with seed 42; it was refused while ``steps=None`` was taken)."""
        fields = RunConfig.model_fields
        settings = {k: v for k, v in settings.items() if v is not None or k not in fields or fields[k].default is None}
        return self.run_config(make_config({**settings, "options": options or {}}), display=display)

    def run_config(self, config: RunConfig, display=None) -> RunResult:
        """One run of a validated config (as read from a YAML file or a batch job)."""
        from vsynth.core.run.pipeline import execute, model_key, plan_run
        from vsynth.core.run.progress import shown
        from vsynth.core.run.quiet import as_library

        check_display(display)
        with as_library():
            plan = plan_run(config)
            if self._loaded is not None and self._loaded.key != model_key(plan):
                self._loaded = None  # free the old set before the new one loads
            with shown(display if display is not None else self.display) as progress:
                report = execute(plan, progress, loaded=self._loaded, write=config.out is not None)
        self._loaded = report.loaded
        return RunResult(frames=report.frames, latents=report.latents, record=report.record, out_dir=report.out_dir)

    def close(self) -> None:
        """Drop the loaded models."""
        self._loaded = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(*, options: dict[str, Any] | None = None, display=None, **settings) -> RunResult:
    """One run on freshly loaded models; see :meth:`Session.run` for the arguments."""
    return Session().run(options=options, display=display, **settings)

"""The diffusion math every bridge composes, over any :class:`~vsynth.core.diffusion.denoiser.Denoiser`
of any noise process and any diffusers scheduler: sampling from noise, denoising from any step of
a schedule, inversion, re-noising to a level, and the clean latent a step predicts.

Written once, tested once. Latents are (B, C, F, H, W). A latent a bridge holds is in its model's
process form (:mod:`vsynth.core.diffusion.processes`); a step of a :class:`Schedule` is addressed by
its position k (0 is the noisiest) and has a level, the process-neutral noise-to-signal ratio at
which two models meet. Nothing here reads a scheduler's output fields: the clean latent of every
step is computed from the model's prediction by the process.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from vsynth.core.diffusion import caches, processes
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.errors import NonFiniteError

Advance = Callable[[int], None]

# The official BIVDiff inversion caps the next timestep at 998 (REFERENCE.md).
BIVDIFF_MAX_TIMESTEP = 998

# Schedulers whose step draws noise: they get the run's generator, so that every draw is the seed's.
_STOCHASTIC = frozenset(
    {"EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LCMScheduler", "FlowMatchLCMScheduler",
     "DDPMScheduler", "DPMSolverSDEScheduler", "TCDScheduler", "CogVideoXDPMScheduler"}
)  # fmt: skip


class Schedule:
    """A denoiser's solver set to ``steps`` steps: step k (0 <= k < steps) starts at :meth:`level` (k) and
    evaluates the model at :meth:`timestep` (k).

    Every entry (from noise, or mid-way at step k) gets a fresh scheduler set to begin there, so a
    multistep solver (DPM-Solver++, UniPC) starts its history empty where a bridge enters, and a
    second-order one (Heun) enters at the start of a step, not between its two evaluations.
    """

    def __init__(self, denoiser: Denoiser, steps: int):
        self.denoiser = denoiser
        self.steps = steps
        self._scheduler = self.fresh()
        self.order = int(getattr(self._scheduler, "order", 1))
        self.process = denoiser.process
        self.form = processes.scheduler_form(self.process, self._scheduler)

    def fresh(self, begin: int = 0):
        """A new scheduler with its timesteps set, to begin at step ``begin``."""
        scheduler = self.denoiser.new_scheduler()
        self.denoiser.set_timesteps(scheduler, self.steps)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin * int(getattr(scheduler, "order", 1)))
        return scheduler

    def timestep(self, k: int):
        return self._scheduler.timesteps[k * self.order]

    @property
    def timesteps(self) -> torch.Tensor:
        """The model timestep of each step, descending in noise."""
        return self._scheduler.timesteps[:: self.order][: self.steps]

    def level(self, k: int) -> torch.Tensor:
        """The noise-to-signal ratio at the start of step k (float64); k == steps: where the last step lands.

        A second-order solver lists each later timestep twice (Heun: 2 * steps - 1 of them), so the end is not
        ``steps * order`` but one past its last timestep, as :func:`processes.entry_level` takes it."""
        index = k * self.order if k < self.steps else len(self._scheduler.timesteps)
        return processes.entry_level(self.process, self._scheduler, index)

    def sdedit_start(self, strength: float) -> int:
        """The step SDEdit at ``strength`` (in [0, 1]) starts at: it runs the last int(steps * strength)
        steps, where diffusers' image-to-image pipelines start. ``steps`` when it runs none."""
        return self.steps - int(self.steps * strength)


def initial_noise(denoiser: Denoiser, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of ``shape`` (B, C, F, H, W), as the denoiser draws it (:meth:`Denoiser.initial_noise`)."""
    return denoiser.initial_noise(shape, generator)


def timesteps(denoiser: Denoiser, steps: int) -> torch.Tensor:
    """The model's timestep of each of ``steps`` sampling steps, descending in noise."""
    return Schedule(denoiser, steps).timesteps


def renoise(denoiser: Denoiser, x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The clean latent ``x0`` with ``noise`` at ``level``, in ``denoiser``'s process form (SDEdit, re-entry)."""
    return denoiser.process.noised(x0, noise, level)


def split(denoiser: Denoiser, latents: torch.Tensor, output: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean latent, noise) that ``denoiser``'s prediction ``output`` for ``latents`` (process form) at ``level`` implies."""
    return denoiser.process.split(latents, output, level)


def to_process(x: torch.Tensor, level: torch.Tensor, source: Denoiser, target: Denoiser) -> torch.Tensor:
    """A noisy latent of ``source``'s process written in ``target``'s (same level, same clean latent and noise)."""
    return processes.convert(x, level, source.process.form, target.process.form)


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    cond: Conditioning,
    *,
    steps: int,
    guidance: float,
    advance: Advance | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample a clean latent video from pure noise with the model's scheduler (``steps`` steps), as its
    diffusers pipeline does (the noise times the scheduler's ``init_noise_sigma``)."""
    schedule = Schedule(denoiser, steps)
    scheduler = schedule.fresh()
    latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # flow schedulers have none: they start at s = 1
    return denoiser.finish(_loop(schedule, scheduler, latents, cond, 0, steps, guidance, advance, generator))


@torch.no_grad()
def denoise(
    schedule: Schedule,
    latents: torch.Tensor,
    cond: Conditioning,
    start: int,
    *,
    guidance: float,
    advance: Advance | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Denoise ``latents`` (process form, at ``schedule.level(start)``) from step ``start`` to the end."""
    scheduler = schedule.fresh(start)
    x = processes.convert(latents, schedule.level(start), schedule.process.form, schedule.form)
    return schedule.denoiser.finish(_loop(schedule, scheduler, x, cond, start, schedule.steps, guidance, advance, generator))


@torch.no_grad()
def denoise_predict(
    schedule: Schedule,
    latents: torch.Tensor,
    cond: Conditioning,
    start: int,
    stop: int,
    *,
    guidance: float,
    advance: Advance | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise ``latents`` (process form, at the level of step ``start``) over steps ``start``..``stop - 1``,
    then evaluate the model at step ``stop`` and return what it predicts there, (clean latent, noise),
    instead of stepping on: the noise is what re-noises the clean latent to ``schedule.level(stop)``.

    Bridges leave a model's schedule mid-way through this clean prediction, never through a noisy
    latent: the two models' schedules differ.
    """
    scheduler = schedule.fresh(start)
    x = processes.convert(latents, schedule.level(start), schedule.process.form, schedule.form)
    x = _loop(schedule, scheduler, x, cond, start, stop, guidance, advance, generator)
    t = scheduler.timesteps[stop * schedule.order]
    output = schedule.denoiser.predict(_model_input(scheduler, x, t), t, cond, guidance)
    if advance:
        advance(1)
    x0, noise = schedule.process.split(x, output, _entry(schedule, scheduler, stop * schedule.order), schedule.form)
    return schedule.denoiser.finish(x0.to(output.dtype)), noise


def _model_input(scheduler, x: torch.Tensor, t) -> torch.Tensor:
    """The latent as the model sees it: the Karras-style samplers scale theirs back to the VP form; the
    FlowMatch* schedulers step on the model's own form and have no ``scale_model_input``."""
    scale = getattr(scheduler, "scale_model_input", None)
    return x if scale is None else scale(x, t)


def _entry(schedule: Schedule, scheduler, index: int) -> torch.Tensor:
    return processes.entry_level(schedule.process, scheduler, index)


def _loop(schedule: Schedule, scheduler, latents, cond, start: int, stop: int, guidance: float, advance, generator):
    """Step ``scheduler`` (set to begin at ``start``) over steps ``start``..``stop - 1`` on ``latents`` in
    ``schedule.form``; ``advance(1)`` once per step (a second-order step evaluates the model twice)."""
    denoiser, order = schedule.denoiser, schedule.order
    # a new sequence of steps: those it steps over, and step ``stop`` that denoise_predict evaluates after them
    caches.reset(denoiser, range(start, min(stop + 1, schedule.steps)), schedule.steps)
    extra = {"generator": generator} if generator is not None and _takes_generator(scheduler) else {}
    last = len(scheduler.timesteps) - 1
    indices = range(start * order, min(stop * order, last + 1))
    for count, index in enumerate(indices, start=1):
        t = scheduler.timesteps[index]
        output = denoiser.predict(_model_input(scheduler, latents, t), t, cond, guidance)
        latents = scheduler.step(output, t, latents, return_dict=False, **extra)[0]
        check_finite(latents, count, len(indices))
        step_done = (index + 1) % order == 0 or index == last
        if advance and step_done:
            advance(1)
    return latents


def _takes_generator(scheduler) -> bool:
    """Whether the step draws noise: then it must draw from the run's generator (the others get none,
    so that they keep every run's draws where they were)."""
    stochastic = type(scheduler).__name__ in _STOCHASTIC or bool(scheduler.config.get("stochastic_sampling", False))
    return stochastic and "generator" in inspect.signature(scheduler.step).parameters


def check_finite(latents: torch.Tensor, step: int, total: int) -> None:
    """Stop at the first NaN or inf: every later step would only carry it into a black video."""
    if not torch.isfinite(latents).all():
        raise NonFiniteError(f"the latents became NaN or infinite at step {step} of {total}")


@torch.no_grad()
def invert(
    schedule: Schedule,
    x0: torch.Tensor,
    cond: Conditioning,
    start: int,
    *,
    advance: Advance | None = None,
) -> torch.Tensor:
    """Invert the clean latent ``x0`` to the level of step ``start``, without guidance; process form.

    Walks the steps that will denoise from there ascending: each evaluates the model at its step's
    timestep with the latent still at the previous level (clean at first), splits the prediction
    into (clean latent, noise) at that previous level and re-noises them to the step's level. For a
    VP model this is DDIM inversion, as diffusers' DDIMInverseScheduler and null-text inversion run
    it; for a flow model it is the reverse Euler step of the ODE, x + (s_k - s_prev) * velocity.
    Every timestep the denoising evaluates is evaluated once here (what feature injection records).
    """
    denoiser, process = schedule.denoiser, schedule.process
    x, level = x0.float(), torch.zeros((), dtype=torch.float64)
    ascending = list(reversed(range(start, schedule.steps)))
    caches.reset(denoiser, ascending, schedule.steps)  # inversion is a sequence of its own: no features of a denoising carry over
    for count, k in enumerate(ascending, start=1):
        output = denoiser.predict(x.to(x0.dtype), schedule.timestep(k), cond, guidance=1.0).float()
        target = schedule.level(k)
        x = process.noised(*process.split(x, output, level), target)
        level = target
        check_finite(x, count, len(ascending))
        if advance:
            advance(1)
    return x.to(x0.dtype)


def shares_schedule(a: Denoiser, b: Denoiser) -> bool:
    """Whether two denoisers sample with one scheduler kind over one training schedule."""
    return a.process == b.process and processes.same_training_schedule(a.scheduler, b.scheduler)


@torch.no_grad()
def bivdiff_invert(
    denoiser: Denoiser,
    latents: torch.Tensor,
    cond: Conditioning,
    *,
    steps: int,
    max_timestep: int = BIVDIFF_MAX_TIMESTEP,
    final_level: torch.Tensor | None = None,
    advance: Advance | None = None,
) -> torch.Tensor:
    """DDIM inversion exactly as the official BIVDiff code runs it (REFERENCE.md), for a VP model.

    For each sampling timestep e ascending, the model is evaluated at e without guidance, the clean
    latent predicted at e is re-noised with that noise to n = min(max_timestep, e + T // steps).
    ``final_level``, where given, is the level the last step re-noises to instead of that of n: the
    level at which another model's schedule takes the latent over.
    """
    process, scheduler = denoiser.process, denoiser.scheduler
    if process.family != "vp":
        raise ValueError(f"BIVDiff's inversion steps on a VP training schedule; this denoiser is {process.name}: use invert()")
    stride = processes.train_timesteps(scheduler) // steps
    ascending = timesteps(denoiser, steps).flip(0).round().long().tolist()  # Euler's timesteps are floats
    x = latents.float()
    caches.reset(denoiser, range(steps - 1, -1, -1), steps)
    for i, e in enumerate(ascending):
        output = denoiser.predict(x.to(denoiser.dtype), e, cond, guidance=1.0).float()
        target = processes.training_level(scheduler, min(max_timestep, e + stride))
        if final_level is not None and i == len(ascending) - 1:
            target = final_level
        x = process.noised(*process.split(x, output, processes.training_level(scheduler, e)), target)
        check_finite(x, i + 1, steps)
        if advance:
            advance(1)
    return x.to(latents.dtype)

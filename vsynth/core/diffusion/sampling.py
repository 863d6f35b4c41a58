"""The diffusion math every bridge composes: initial noise, denoising loops, DDIM inversion,
SDEdit noising and clean-latent prediction, over any :class:`~vsynth.core.diffusion.models.Denoiser`.

Written once, tested once. Latents are (B, C, F, H, W); timesteps are scheduler timesteps.
"""

from __future__ import annotations

from typing import Callable

import torch

from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.errors import NonFiniteError

Advance = Callable[[int], None]

# The official BIVDiff inversion caps the next timestep at 998 (REFERENCE.md).
BIVDIFF_MAX_TIMESTEP = 998


def initial_noise(denoiser: Denoiser, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of ``shape`` (B, C, F, H, W), as the denoiser draws it (:meth:`Denoiser.initial_noise`)."""
    return denoiser.initial_noise(shape, generator)


def timesteps(denoiser: Denoiser, steps: int) -> torch.Tensor:
    """The model's sampling timesteps for ``steps`` steps, descending."""
    scheduler = denoiser.new_scheduler()
    scheduler.set_timesteps(steps)
    return scheduler.timesteps


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    cond: Conditioning,
    *,
    steps: int,
    guidance: float,
    advance: Advance | None = None,
) -> torch.Tensor:
    """Sample a clean latent video from pure noise with the model's scheduler (``steps`` steps)."""
    scheduler = denoiser.new_scheduler()
    scheduler.set_timesteps(steps, device=denoiser.device)
    latents = noise * scheduler.init_noise_sigma
    return _loop(denoiser, scheduler, latents, cond, scheduler.timesteps, guidance, advance)[0]


@torch.no_grad()
def denoise(
    denoiser: Denoiser,
    scheduler,
    latents: torch.Tensor,
    cond: Conditioning,
    steps: torch.Tensor,
    *,
    guidance: float,
    advance: Advance | None = None,
) -> torch.Tensor:
    """Denoise a latent video at the noise level of ``steps[0]`` over ``steps`` (a tail of ``scheduler.timesteps``).

    ``latents`` are in the variance-preserving form every bridge uses, sqrt(abar) x0 + sqrt(1 - abar) eps.
    Schedulers that work on sigmas (Euler and kin) want x0 + sigma eps instead, which is the same
    latent times sqrt(sigma^2 + 1); they also need to know where in their schedule they begin.
    """
    start = int((scheduler.timesteps == steps[0]).nonzero()[0])
    return _loop(denoiser, scheduler, to_scheduler_space(scheduler, latents, start), cond, steps, guidance, advance)[0]


def _loop(denoiser, scheduler, latents, cond, steps, guidance, advance):
    """Step over ``steps``; returns the final latents and what the last step predicted (clean latent, noise)."""
    x0 = eps = None
    for step, t in enumerate(steps, start=1):
        eps = denoiser.predict_noise(scheduler.scale_model_input(latents, t), t, cond, guidance)
        out = scheduler.step(eps, t, latents)
        latents, x0 = out.prev_sample, out.pred_original_sample
        check_finite(latents, step, len(steps))
        if advance:
            advance(1)
    return latents, x0, eps


def check_finite(latents: torch.Tensor, step: int, total: int) -> None:
    """Stop at the first NaN or inf: every later step would only carry it into a black video."""
    if not torch.isfinite(latents).all():
        raise NonFiniteError(f"the latents became NaN or infinite at step {step} of {total}")


def noise_level(scheduler, index: int) -> torch.Tensor:
    """abar at ``scheduler.timesteps[index]``, as the scheduler sees it (float32).

    Sigma schedulers (Euler and kin) step on sigma = sqrt((1 - abar) / abar), so abar = 1 / (1 + sigma^2);
    the others read ``alphas_cumprod`` at the timestep.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        return 1 / (1 + sigmas[index].float() ** 2)
    return scheduler.alphas_cumprod[int(scheduler.timesteps[index])].float()


def to_scheduler_space(scheduler, latents: torch.Tensor, index: int) -> torch.Tensor:
    """VP-form latents at ``scheduler.timesteps[index]`` in the form the scheduler steps on, the scheduler set to begin there.

    Unchanged for DDIM; times sqrt(sigma^2 + 1) for sigma schedulers, which also need their begin index.
    """
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(index)
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        latents = latents * (sigmas[index] ** 2 + 1).sqrt().to(latents.dtype)
    return latents


@torch.no_grad()
def denoise_predict(
    denoiser: Denoiser,
    scheduler,
    latents: torch.Tensor,
    cond: Conditioning,
    steps: torch.Tensor,
    *,
    guidance: float,
    advance: Advance | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise VP-form ``latents`` over ``steps`` as :func:`denoise` does, and return what the last step predicts,
    (clean latent, noise), instead of the latent it steps to.

    Bridges leave a model's schedule mid-way through this clean prediction (the scheduler's
    ``pred_original_sample``), never through a noisy latent: the two models' schedules differ.
    """
    latents = to_scheduler_space(scheduler, latents, int((scheduler.timesteps == steps[0]).nonzero()[0]))
    _, x0, eps = _loop(denoiser, scheduler, latents, cond, steps, guidance, advance)
    return x0.to(eps.dtype), eps


@torch.no_grad()
def invert(
    denoiser: Denoiser,
    scheduler,
    x0: torch.Tensor,
    cond: Conditioning,
    steps: torch.Tensor,
    *,
    advance: Advance | None = None,
) -> torch.Tensor:
    """DDIM inversion of the clean latent ``x0`` to the level of ``steps[0]``, without guidance; VP form.

    ``steps`` are the denoising steps that will run from there (a tail of ``scheduler.timesteps``);
    the inversion walks them ascending. Each step evaluates the model at its target timestep with the
    latent still at the previous level (clean at first), as diffusers' DDIMInverseScheduler and
    null-text inversion do, so every timestep the denoising evaluates was evaluated once here (what
    feature injection records and injects). Sigma schedulers too: in VP form an Euler step is a DDIM step.
    """
    start = int((scheduler.timesteps == steps[0]).nonzero()[0])
    x, level = x0.float(), torch.ones((), device=x0.device)
    for step, index in enumerate(reversed(range(start, start + len(steps))), start=1):
        eps = denoiser.predict_noise(x.to(x0.dtype), scheduler.timesteps[index], cond, guidance=1.0).float()
        target = noise_level(scheduler, index).to(x.device)
        x = add_noise(predict_x0(x, eps, level), eps, target)
        level = target
        check_finite(x, step, len(steps))
        if advance:
            advance(1)
    return x.to(x0.dtype)


def sdedit_steps(scheduler, strength: float) -> torch.Tensor:
    """The tail of ``scheduler.timesteps`` that SDEdit at ``strength`` (in [0, 1]) runs: the last
    int(steps * strength), where diffusers' image-to-image pipelines start. May be empty."""
    total = len(scheduler.timesteps)
    return scheduler.timesteps[total - int(total * strength) :]


def predict_x0(latents: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """Clean latent predicted from x_t and eps: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (latents - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """SDEdit / DDIM re-noising of a clean latent to the level abar_t: sqrt(abar) x0 + sqrt(1 - abar) noise."""
    return abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * noise


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
    """DDIM inversion exactly as the official BIVDiff code runs it (REFERENCE.md).

    For each sampling timestep e ascending, eps is evaluated at e without guidance, the clean
    latent predicted at e is re-noised with that eps to n = min(max_timestep, e + T // steps).
    ``final_level``, where given, is the abar the last step re-noises to instead of abar(n): the
    level at which another model's schedule takes the latent over.
    """
    abar = denoiser.alphas_cumprod.to(latents.device, torch.float32)
    stride = denoiser.scheduler.config.num_train_timesteps // steps
    ascending = timesteps(denoiser, steps).flip(0).round().long().tolist()  # Euler's timesteps are floats
    x = latents.float()
    for i, e in enumerate(ascending):
        eps = denoiser.predict_noise(x.to(denoiser.dtype), e, cond, guidance=1.0).float()
        target = abar[min(max_timestep, e + stride)]
        if final_level is not None and i == len(ascending) - 1:
            target = final_level.to(x.device, torch.float32)
        x = add_noise(predict_x0(x, eps, abar[e]), eps, target)
        check_finite(x, i + 1, steps)
        if advance:
            advance(1)
    return x.to(latents.dtype)

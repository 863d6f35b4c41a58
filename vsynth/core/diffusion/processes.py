"""Noise processes: the one place that knows how a model's latents hold signal and noise.

Every level in vsynth is one process-neutral number, the noise-to-signal ratio

    level = sqrt((1 - abar) / abar)   for a variance-preserving (VP) process, x_t = sqrt(abar) x0 + sqrt(1 - abar) noise
    level = s / (1 - s)               for rectified flow,                      x_t = (1 - s) x0 + s noise

so that x_t / a = x0 + level * noise for the process's signal coefficient ``a``. Two models of
different processes meet at equal levels: equal signal-to-noise ratio, 1 / level^2. A level is
infinite for pure noise (a flow schedule's s = 1) and 0 for a clean latent.

A process also says what its network predicts (``epsilon``, ``v_prediction`` on VP; the flow
velocity noise - x0; or ``sample``, the clean latent) and turns any prediction into (clean
latent, noise) at a level, and (clean latent, noise) into a latent at any level. The loops in
:mod:`vsynth.core.diffusion.sampling` do all their arithmetic through this module, and nothing
outside it reads ``alphas_cumprod``, ``sigmas`` or a scheduler's output fields.

Schedulers step on one of three *forms* of the same latent: VP's own (DDIM, DPM-Solver++, UniPC,
LCM), the variance-exploding x0 + level * noise of the Karras-style samplers (Euler and kin on a
VP model), or flow's. :func:`scheduler_form` tells which; the loops convert at entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Prediction = Literal["epsilon", "v_prediction", "flow", "sample"]

# Karras-style schedulers of diffusers that step on x0 + sigma * noise when the model is VP.
_EXPLODING_FORM = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "LMSDiscreteScheduler",
        "DPMSolverSDEScheduler",
        "EDMEulerScheduler",
        "EDMDPMSolverMultistepScheduler",
    }
)


@dataclass(frozen=True)
class Form:
    """How a latent at a level is written: x = alpha(level) * x0 + beta(level) * noise."""

    name: Literal["vp", "exploding", "flow"]

    def coefficients(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, beta) in float32, for a float64 ``level`` (infinite for pure noise)."""
        level = level.double()
        if self.name == "vp":
            abar = (1 / (1 + level**2)).float()  # the float32 abar a VP schedule holds, recovered exactly
            return abar.sqrt(), (1 - abar).sqrt()
        if self.name == "exploding":
            return torch.ones_like(level, dtype=torch.float32), level.float()
        s = (1 / (1 + 1 / level)).float()  # s = level / (1 + level), exact at 0 and at infinity
        return 1 - s, s


VP_FORM, EXPLODING_FORM, FLOW_FORM = Form("vp"), Form("exploding"), Form("flow")


@dataclass(frozen=True)
class Process:
    """A noise process and what the network predicts in it."""

    name: str  # "vp-eps", "vp-v", "flow", "vp-sample"
    form: Form  # the process's own form of a noisy latent
    prediction: Prediction

    @property
    def family(self) -> Literal["vp", "flow"]:
        return "flow" if self.form is FLOW_FORM else "vp"

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """The latent at ``level`` in this process's form: alpha x0 + beta noise."""
        return renoise(self.form, x0, noise, level)

    def split(self, x: torch.Tensor, output: torch.Tensor, level: torch.Tensor, form: Form | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean latent, noise) from the network's ``output`` for the latent ``x`` at ``level``.

        ``x`` is in ``form`` (a scheduler's; by default the process's own). Computed in ``x``'s dtype
        with float32 coefficients cast to it, the same arithmetic as diffusers' schedulers.
        """
        form = form or self.form
        alpha, beta = (c.to(x.device, x.dtype) for c in form.coefficients(level))
        if self.prediction == "epsilon":
            return (x - beta * output) / alpha, output
        if self.prediction == "sample":
            return output, (x - alpha * output) / beta
        a, b = (c.to(x.device, x.dtype) for c in self.form.coefficients(level))
        native = x if form == self.form else x * (a / alpha)
        if self.prediction == "v_prediction":  # v = a noise - b x0, with a^2 + b^2 = 1
            return a * native - b * output, b * native + a * output
        # flow: velocity = noise - x0, native = (1 - s) x0 + s noise
        return native - b * output, native + a * output


VP_EPSILON = Process("vp-eps", VP_FORM, "epsilon")
VP_V = Process("vp-v", VP_FORM, "v_prediction")
VP_SAMPLE = Process("vp-sample", VP_FORM, "sample")
FLOW = Process("flow", FLOW_FORM, "flow")
PROCESSES = {p.name: p for p in (VP_EPSILON, VP_V, VP_SAMPLE, FLOW)}


def renoise(form: Form, x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """alpha(level) x0 + beta(level) noise, in ``x0``'s dtype."""
    alpha, beta = (c.to(x0.device, x0.dtype) for c in form.coefficients(level))
    return alpha * x0 + beta * noise


def convert(x: torch.Tensor, level: torch.Tensor, source: Form, target: Form) -> torch.Tensor:
    """The same noisy latent written in another form (x / alpha_source * alpha_target)."""
    if source == target:
        return x
    a_source, _ = source.coefficients(level)
    a_target, _ = target.coefficients(level)
    if source == VP_FORM and target == EXPLODING_FORM:  # as diffusers' Karras samplers scale: x * sqrt(sigma^2 + 1)
        return x * (level.float() ** 2 + 1).sqrt().to(x.device, x.dtype)
    return x * (a_target / a_source).to(x.device, x.dtype)


def infer_process(scheduler) -> Process:
    """The process a diffusers scheduler's config describes (for a denoiser that declares none)."""
    config = scheduler.config
    prediction = config.get("prediction_type", "epsilon")
    if _is_flow(scheduler) or prediction == "flow_prediction":
        return FLOW
    return {"epsilon": VP_EPSILON, "v_prediction": VP_V, "sample": VP_SAMPLE}.get(prediction, VP_EPSILON)


def _is_flow(scheduler) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch") or bool(scheduler.config.get("use_flow_sigmas", False))


def scheduler_form(process: Process, scheduler) -> Form:
    """The form ``scheduler`` steps on for a model of ``process``."""
    if process.family == "flow":
        return FLOW_FORM
    if type(scheduler).__name__ in _EXPLODING_FORM or float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0:
        return EXPLODING_FORM
    return VP_FORM


def entry_level(process: Process, scheduler, index: int) -> torch.Tensor:
    """The level (float64, on the CPU) of ``scheduler.timesteps[index]`` as ``scheduler`` steps it; the
    scheduler must have its timesteps set. ``index == len(timesteps)`` is where the last step lands."""
    sigmas = getattr(scheduler, "sigmas", None)
    if process.family == "flow":
        s = sigmas[index].double().cpu()
        return s / (1 - s)  # infinite at s = 1
    if sigmas is not None and len(sigmas) > index:
        return sigmas[index].double().cpu()
    if index >= len(scheduler.timesteps):
        return torch.zeros((), dtype=torch.float64)
    return _vp_level(scheduler.alphas_cumprod[int(scheduler.timesteps[index])])


def training_level(scheduler, timestep: int) -> torch.Tensor:
    """The level of a training timestep of a VP schedule (BIVDiff's inversion steps on those)."""
    return _vp_level(scheduler.alphas_cumprod[int(timestep)])


def train_timesteps(scheduler) -> int:
    return int(scheduler.config.num_train_timesteps)


def same_training_schedule(a, b) -> bool:
    """Whether two schedulers are one kind over one training schedule (the same abar for every timestep)."""
    if type(a) is not type(b):
        return False
    if _is_flow(a) or _is_flow(b):
        return dict(a.config) == dict(b.config)
    return torch.equal(a.alphas_cumprod.cpu(), b.alphas_cumprod.cpu())


def _vp_level(abar: torch.Tensor) -> torch.Tensor:
    abar = abar.double().cpu()
    return ((1 - abar) / abar).sqrt()


def scheduler_record(process: Process, scheduler) -> dict:
    """What run.json says of a model's sampling: process, prediction, scheduler class and config."""
    return {
        "process": process.name,
        "prediction": process.prediction,
        "scheduler": type(scheduler).__name__,
        "scheduler_config": {k: _json_safe(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")},
    }


def _json_safe(value):
    """Infinite floats (DPM-Solver's lambda_min_clipped) as strings: JSON has no infinity."""
    return str(value) if isinstance(value, float) and value in (float("inf"), float("-inf")) else value

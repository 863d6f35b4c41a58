"""The diffusion core checked against denoisers that are exact: data drawn from a known Gaussian.

Every element of a clean latent is x0 ~ N(MU, S0^2), independently. For a latent written in a process's
own form, x = a x0 + b noise, the best denoiser is then known in closed form,

    E[x0 | x] = MU + a S0^2 / (a^2 S0^2 + b^2) * (x - a MU),

and every prediction (eps, v, the flow velocity, the clean latent) follows from (E[x0 | x], the noise
it implies). A sampler that integrates the probability-flow ODE from the level L_T it starts at maps
pure noise z to MU + S0 / c_T * (z - a_T MU), c_T^2 = a_T^2 S0^2 + b_T^2: a Gaussian of known mean and
standard deviation. So sampling, inversion, re-noising and mid-way entry can each be checked against a
number, for every process and every solver that fits it; and each check is shown able to fail by a
planted bug (a denoiser that predicts another quantity than it declares, a form conversion left out).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from vsynth.core.diffusion import processes, sampling, solvers
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.schedules import SD15_DDIM

MU, S0 = 0.5, 0.3
SHAPE = (1, 4, 8, 16, 16)  # 8192 elements: the empirical mean and std are within ~0.004 of the truth
COND = Conditioning(text=torch.zeros(1, 1, 1))
PROCESSES = {"vp-eps": processes.VP_EPSILON, "vp-v": processes.VP_V, "flow": processes.FLOW}
# Solvers whose step re-noises the clean prediction with fresh noise (consistency-style): with an exact
# (posterior-mean) denoiser they sample a narrower Gaussian, computed by lcm_moments below.
RENOISING = {("lcm", "vp"), ("lcm", "flow"), ("euler-a", "flow")}
STOCHASTIC = {"euler-a", "lcm"}
# Steps per solver for sampling from noise (the re-noising ones: see steps_for).
STEPS = {"ddim": 200, "euler": 200, "euler-a": 500, "dpm++": 100, "unipc": 100, "lcm": 8, "heun": 30}


def base_scheduler(process: processes.Process):
    if process.family == "flow":
        return FlowMatchEulerDiscreteScheduler(shift=3.0)
    return DDIMScheduler(**dict(SD15_DDIM, prediction_type=process.prediction))


class Analytic(Denoiser):
    """The exact denoiser of N(MU, S0^2) data, for ``process``; ``predicts`` plants a bug where it is not
    the process's own prediction. Counts its evaluations."""

    frame_folded = False
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, process: processes.Process, scheduler, predicts: str | None = None):
        self.declared_process = process
        self.scheduler = scheduler
        self.predicts = predicts or process.prediction
        self.calls = 0
        if process.family == "vp":  # the level of every training timestep, interpolated between them
            abar = scheduler.alphas_cumprod.double()
            self.table = ((1 - abar) / abar).sqrt()

    def level(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.declared_process.family == "flow":
            s = t / 1000
            return s / (1 - s)
        low = t.floor().long().clamp(0, len(self.table) - 2)
        frac = t - low
        return self.table[low] * (1 - frac) + self.table[low + 1] * frac

    def predict(self, latents, t, cond, guidance):
        self.calls += 1
        a, b = coefficients(self.declared_process, self.level(t))
        x = latents.double()
        x0 = MU + a * S0**2 / (a**2 * S0**2 + b**2) * (x - a * MU)
        noise = (x - a * x0) / b
        output = {"epsilon": noise, "v_prediction": a * noise - b * x0, "flow": noise - x0, "sample": x0}[self.predicts]
        return output.to(latents.dtype)


def coefficients(process: processes.Process, level) -> tuple[float, float]:
    """(a, b) of x = a x0 + b noise in the process's own form, in float64."""
    level = float(level)
    if process.family == "flow":
        s = 1.0 if math.isinf(level) else level / (1 + level)
        return 1 - s, s
    return 1 / math.sqrt(1 + level**2), level / math.sqrt(1 + level**2)


def posterior_mean(process, x: torch.Tensor, level) -> torch.Tensor:
    a, b = coefficients(process, level)
    return MU + a * S0**2 / (a**2 * S0**2 + b**2) * (x.double() - a * MU)


_DENOISERS: dict = {}


def analytic(process_name: str, solver: str, predicts: str | None = None) -> Analytic:
    """One denoiser per (process, solver), reused by every test; its evaluation counter reset."""
    key = (process_name, solver, predicts)
    if key not in _DENOISERS:
        process = PROCESSES[process_name]
        _DENOISERS[key] = Analytic(process, solvers.build(solver, base_scheduler(process)), predicts)
    denoiser = _DENOISERS[key]
    denoiser.calls = 0
    return denoiser


CASES = [(p, s) for p in PROCESSES for s in solvers.fitting(p)]
DETERMINISTIC = [(p, s) for p, s in CASES if s not in STOCHASTIC]


def data(seed: int) -> torch.Tensor:
    return MU + S0 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def noise(seed: int) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def ode_target(schedule: sampling.Schedule, z: torch.Tensor | None = None, start: int = 0) -> tuple[float, float]:
    """Mean and std of what the exact ODE gives from noise ``z`` at the level of step ``start`` (the
    schedule's first level is not pure noise on SD1.5's schedule): MU + S0 / c (z - a MU) for each
    element; of the population N(0, 1) when ``z`` is None."""
    a, b = coefficients(schedule.process, schedule.level(start))
    c = math.sqrt(a**2 * S0**2 + b**2)
    z_mean, z_std = (0.0, 1.0) if z is None else (z.mean().item(), z.std().item())
    return MU + S0 / c * (z_mean - a * MU), S0 / c * z_std


def renoising_target(schedule: sampling.Schedule) -> tuple[float, float]:
    """Mean and std of a re-noising sampler's result from N(0, 1): at each step the posterior mean of
    the latent, then (but at the last) that mean re-noised with fresh noise to the next step's level."""
    process, mean, var = schedule.process, 0.0, 1.0
    for k in range(schedule.steps):
        a, b = coefficients(process, schedule.level(k))
        gain = a * S0**2 / (a**2 * S0**2 + b**2)
        mean, var = MU + gain * (mean - a * MU), gain**2 * var
        if k < schedule.steps - 1:
            a, b = coefficients(process, schedule.level(k + 1))
            mean, var = a * mean, a**2 * var + b**2
    return mean, math.sqrt(var)


def expected_stats(schedule: sampling.Schedule, solver: str, z: torch.Tensor) -> tuple[float, float]:
    if (solver, schedule.process.family) in RENOISING:
        return renoising_target(schedule)
    return ode_target(schedule, None if solver in STOCHASTIC else z)


# Tolerances on the empirical mean and std of 8192 samples. A deterministic sampler is compared with
# the exact ODE's image of the same noise; a stochastic one with the population (sampling error ~0.004).
# The discretisation error at STEPS is below 0.012 (SD1.5's "leading" steps are coarse near the data,
# where a Gaussian of std 0.3 is resolved: first-order solvers need many); a wrong process arithmetic
# misses by 0.1 or more (the planted bugs below).
MEAN_TOL, STD_TOL = 0.02, 0.02


def stats_error(samples: torch.Tensor, target: tuple[float, float]) -> tuple[float, float]:
    return abs(samples.mean().item() - target[0]), abs(samples.std().item() - target[1])


def within(samples: torch.Tensor, target: tuple[float, float]) -> bool:
    mean_error, std_error = stats_error(samples, target)
    return mean_error < MEAN_TOL and std_error < STD_TOL


def steps_for(solver: str, family: str) -> int:
    if (solver, family) in RENOISING:
        return 8 if solver == "lcm" else 50
    return STEPS[solver]


def sample_stats(denoiser: Analytic, solver: str, seed: int = 0):
    """Samples from noise with ``solver`` and the statistics they should have."""
    z = noise(seed)
    steps = steps_for(solver, denoiser.process.family)
    generator = torch.Generator().manual_seed(seed + 1) if solver in STOCHASTIC else None
    samples = sampling.sample(denoiser, z, COND, steps=steps, guidance=1.0, generator=generator)
    return samples, expected_stats(sampling.Schedule(denoiser, steps), solver, z)


# (a) sampling from pure noise lands in the data distribution


@pytest.mark.parametrize("process_name, solver", CASES)
def test_sampling_from_noise_gives_the_data_distribution(process_name, solver):
    denoiser = analytic(process_name, solver)
    samples, target = sample_stats(denoiser, solver)
    assert within(samples, target), (stats_error(samples, target), target)
    assert denoiser.calls == steps_for(solver, denoiser.process.family) * (2 if solver == "heun" else 1) - (solver == "heun")


@pytest.mark.parametrize(
    "process_name, predicts, solver",
    [("vp-eps", "v_prediction", "ddim"), ("vp-v", "epsilon", "dpm++"), ("vp-eps", "v_prediction", "euler"), ("flow", "sample", "euler"),
     ("flow", "epsilon", "unipc")],
)  # fmt: skip
def test_a_denoiser_that_predicts_other_than_it_declares_fails_the_same_check(process_name, predicts, solver):
    """The planted bug: the check above is not loose enough to let a wrong prediction type through."""
    samples, target = sample_stats(analytic(process_name, solver, predicts), solver)
    assert not within(samples, target), (stats_error(samples, target), target)

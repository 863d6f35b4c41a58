"""The diffusion core checked against denoisers that are exact: data drawn from a known Gaussian.

Every element of a clean latent is x0 ~ N(MU, S0^2), independently. For a latent written in a process's
own form, x = a x0 + b noise, the best denoiser is then known in closed form,

    E[x0 | x] = MU + a S0^2 / (a^2 S0^2 + b^2) * (x - a MU),

and every prediction (eps, v, the flow velocity, the clean latent) follows from (E[x0 | x], the noise
it implies). A sampler that integrates the probability-flow ODE from the level L_T it starts at maps
pure noise z to MU + S0 / c_T * (z - a_T MU), c_T^2 = a_T^2 S0^2 + b_T^2: a Gaussian of known mean and
standard deviation. So sampling, inversion, re-noising and mid-way entry can each be checked against a
number, for every process and every solver that fits it; and each check is shown able to fail by a
planted bug (a denoiser that predicts another quantity than it declares, a form conversion left out,
a flow level read as s).
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
# (posterior-mean) denoiser they sample a narrower Gaussian, computed by renoising_target below. For that
# reason flow offers no euler-a: diffusers' FlowMatchEulerDiscreteScheduler(stochastic_sampling=True) steps as
# FlowMatchLCMScheduler does, unlike VP's ancestral Euler, which keeps the marginals.
RENOISING = {("lcm", "vp"), ("lcm", "flow")}
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
# The discretisation error at STEPS is below 0.015 (SD1.5's "leading" steps are coarse near the data,
# where a Gaussian of std 0.3 is resolved: first-order solvers need many steps); with a wrong process
# arithmetic the mean or the std misses by 0.08 or more (the planted bugs below).
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


# (b) inversion to a mid level, then denoising back from there, returns the start


ROUND_TRIP_STEPS = 200  # DDIM inversion's error is first order in the step; SD1.5's low end is coarse
ROUND_TRIP_TOL = 0.04  # relative to the spread: |back - x0| / |x0 - MU|, measured 0.006 to 0.028; the inverted latent 0.011 to 0.024


def round_trip(denoiser: Analytic, x0: torch.Tensor, steps: int = ROUND_TRIP_STEPS):
    schedule = sampling.Schedule(denoiser, steps)
    start = steps // 2
    inverted = sampling.invert(schedule, x0, COND, start)
    back = sampling.denoise(schedule, inverted, COND, start, guidance=1.0)
    return schedule, start, inverted, back


def relative_error(back: torch.Tensor, x0: torch.Tensor) -> float:
    return ((back - x0).norm() / (x0 - MU).norm()).item()


@pytest.mark.parametrize("process_name, solver", DETERMINISTIC)
def test_inversion_round_trip_returns_the_start(process_name, solver):
    denoiser, x0 = analytic(process_name, solver), data(5)
    schedule, start, inverted, back = round_trip(denoiser, x0)
    assert relative_error(back, x0) < ROUND_TRIP_TOL
    # The exact ODE takes each element x0 to a MU + c / S0 (x0 - MU) at the level of step ``start``,
    # c^2 = a^2 S0^2 + b^2: the process's marginal there.
    a, b = coefficients(schedule.process, schedule.level(start))
    exact = a * MU + math.sqrt(a**2 * S0**2 + b**2) / S0 * (x0 - MU)
    assert ((inverted - exact).norm() / (exact - a * MU).norm()).item() < ROUND_TRIP_TOL
    assert denoiser.calls == (ROUND_TRIP_STEPS - start) * (3 if solver == "heun" else 2) - (solver == "heun")


def test_a_round_trip_that_enters_an_exploding_form_scheduler_unconverted_fails(monkeypatch):
    """The planted bug: without the VP -> x0 + level * noise conversion at entry, Euler's round trip breaks."""
    monkeypatch.setattr(processes, "convert", lambda x, level, source, target: x)
    x0 = data(5)
    *_, back = round_trip(analytic("vp-eps", "euler"), x0)
    assert relative_error(back, x0) > ROUND_TRIP_TOL


# (c) re-noising a clean latent to a step's level, then predicting there, gives the exact posterior mean


# dpm++ and unipc on flow sigmas hand the model int(1000 s), not 1000 s (as diffusers' flow pipelines
# do): the model predicts at a level up to 0.1 % off the one the latent is at, which costs up to ~3e-3
# in the clean latent and ~1e-2 in the noise near the data. Everywhere else the prediction is exact.
QUANTIZED = {("flow", "dpm++"), ("flow", "unipc")}


@pytest.mark.parametrize("process_name, solver", CASES)
def test_renoise_then_predict_gives_the_closed_form_clean_latent(process_name, solver):
    denoiser, x0, n = analytic(process_name, solver), data(5), noise(6)
    schedule = sampling.Schedule(denoiser, 30)
    x0_tol, noise_tol = (5e-3, 2e-2) if (process_name, solver) in QUANTIZED else (1e-5, 1e-5)
    for k in (1, 10, 20, 29):
        level = schedule.level(k)
        x = sampling.renoise(denoiser, x0, n, level)
        a, b = coefficients(denoiser.process, level)
        torch.testing.assert_close(x.double(), a * x0.double() + b * n.double(), atol=1e-5, rtol=1e-5)
        got_x0, got_noise = sampling.denoise_predict(schedule, x, COND, k, k, guidance=1.0)
        want_x0 = posterior_mean(denoiser.process, x, level)
        torch.testing.assert_close(got_x0.double(), want_x0, atol=x0_tol, rtol=0)
        torch.testing.assert_close(got_noise.double(), (x.double() - a * want_x0) / b, atol=noise_tol, rtol=0)
    assert denoiser.calls == 4  # one evaluation each, no step


# (d) SDEdit: entering a schedule mid-way from a clean latent lands in the data distribution


SDEDIT_STEPS = 100
SDEDIT = [(p, s) for p in PROCESSES for s in ("dpm++", "unipc", "heun", "euler") + (("ddim",) if p != "flow" else ())]


def sdedit(denoiser: Analytic, x0: torch.Tensor, n: torch.Tensor, strength: float = 0.5):
    """(the step it starts at, its result, the statistics of the exact ODE's image of its entry latent)."""
    schedule = sampling.Schedule(denoiser, SDEDIT_STEPS)
    start = schedule.sdedit_start(strength)
    level = schedule.level(start)
    latents = sampling.renoise(denoiser, x0, n, level)
    a, b = coefficients(denoiser.process, level)
    exact = MU + S0 / math.sqrt(a**2 * S0**2 + b**2) * (latents - a * MU)
    denoiser.calls = 0
    return start, sampling.denoise(schedule, latents, COND, start, guidance=1.0), (exact.mean().item(), exact.std().item())


@pytest.mark.parametrize("process_name, solver", SDEDIT)
def test_sdedit_at_half_strength_lands_in_the_data_distribution(process_name, solver):
    denoiser = analytic(process_name, solver)
    start, result, target = sdedit(denoiser, data(7), noise(8))
    assert start == SDEDIT_STEPS // 2
    assert within(result, target), (stats_error(result, target), target)
    assert max(stats_error(result, (MU, S0))) < 0.03  # and the target is the data's N(MU, S0^2), up to sampling
    evaluations = SDEDIT_STEPS - start
    assert denoiser.calls == (2 * evaluations - 1 if solver == "heun" else evaluations)  # diffusers' Heun: 2N - 1


def test_sdedit_into_a_flow_schedule_at_the_wrong_level_fails(monkeypatch):
    """The planted bug: a flow schedule's level taken as s instead of s / (1 - s) misses the distribution."""
    original = processes.entry_level

    def wrong(process, scheduler, index):
        level = original(process, scheduler, index)
        return level / (1 + level) if process.family == "flow" else level

    monkeypatch.setattr(processes, "entry_level", wrong)
    _, result, target = sdedit(analytic("flow", "dpm++"), data(7), noise(8))
    assert not within(result, target), (stats_error(result, target), target)


# (e) two models of different processes meet at the same level


@pytest.mark.parametrize("level", [0.05, 0.4, 1.0, 3.0, 20.0])
def test_vp_and_flow_latents_at_one_level_hold_the_same_signal_to_noise(level):
    vp, flow = analytic("vp-eps", "ddim"), analytic("flow", "euler")
    x0, n, level = data(9), noise(10), torch.tensor(level, dtype=torch.float64)
    x_vp, x_flow = sampling.renoise(vp, x0, n, level), sampling.renoise(flow, x0, n, level)
    a_vp, a_flow = 1 / math.sqrt(1 + float(level) ** 2), 1 / (1 + float(level))
    exploding = x0 + float(level) * n  # x / alpha: the signal plus level times the noise, in both
    torch.testing.assert_close(x_vp / a_vp, exploding, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_flow / a_flow, exploding, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sampling.to_process(x_vp, level, vp, flow), x_flow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sampling.to_process(x_flow, level, flow, vp), x_vp, atol=1e-5, rtol=1e-5)
    # And the two exact models, each told the level in its own timesteps, agree on the clean latent.
    t_flow = 1000 * float(level) / (1 + float(level))
    x0_flow, _ = sampling.split(flow, x_flow, flow.predict(x_flow, t_flow, COND, 1.0), level)
    x0_vp = posterior_mean(vp.process, x_vp, level)
    torch.testing.assert_close(x0_flow.double(), x0_vp, atol=1e-5, rtol=1e-5)

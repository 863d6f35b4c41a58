"""The sampling math, checked by hand on a denoiser whose noise prediction is a constant."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from vsynth.core.diffusion import processes, sampling
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning

SD15_DDIM = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon", timestep_spacing="leading",
)  # fmt: skip


def sd15_alphas_cumprod() -> list[float]:
    """SD1.5's abar(t), computed from the published schedule without diffusers."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).tolist()


class ConstantDenoiser(Denoiser):
    """Predicts the same noise everywhere and records the timesteps it was asked about."""

    frame_folded = False

    def __init__(self, eps: float):
        self.scheduler = DDIMScheduler(**SD15_DDIM)
        self.eps = eps
        self.calls = []

    device = torch.device("cpu")
    dtype = torch.float32

    def predict_noise(self, latents, t, cond, guidance):
        self.calls.append((int(t), guidance))
        return torch.full_like(latents, self.eps)


def test_inversion_two_steps_matches_hand_computation():
    abar = sd15_alphas_cumprod()
    eps, x0 = 0.3, 0.7
    denoiser = ConstantDenoiser(eps)
    out = sampling.bivdiff_invert(denoiser, torch.full((1, 4, 2, 2, 2), x0), Conditioning(text=torch.zeros(1)), steps=2)

    # 2 steps: timesteps 501, 1; inversion walks 1 -> 501 -> min(998, 1001) = 998, eps evaluated at the current t.
    assert denoiser.calls == [(1, 1.0), (501, 1.0)]
    pred = (x0 - math.sqrt(1 - abar[1]) * eps) / math.sqrt(abar[1])
    x = math.sqrt(abar[501]) * pred + math.sqrt(1 - abar[501]) * eps
    pred = (x - math.sqrt(1 - abar[501]) * eps) / math.sqrt(abar[501])
    expected = math.sqrt(abar[998]) * pred + math.sqrt(1 - abar[998]) * eps
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-5)


def test_inversion_visits_the_official_timesteps_for_50_steps():
    denoiser = ConstantDenoiser(0.0)
    sampling.bivdiff_invert(denoiser, torch.zeros(1, 4, 1, 2, 2), Conditioning(text=torch.zeros(1)), steps=50)
    assert [t for t, _ in denoiser.calls] == list(range(1, 1000, 20))


def test_inversion_of_zero_noise_only_rescales():
    """With eps = 0 the latent is only rescaled by sqrt(abar(998) / abar(1))."""
    abar = sd15_alphas_cumprod()
    out = sampling.bivdiff_invert(ConstantDenoiser(0.0), torch.ones(1, 4, 1, 2, 2), Conditioning(text=torch.zeros(1)), steps=50)
    assert out.flatten()[0].item() == pytest.approx(math.sqrt(abar[998] / abar[1]), rel=1e-4)


STEPPED_FORMS = [  # the forms a scheduler steps each process on
    *((p, f) for p in (processes.VP_EPSILON, processes.VP_V, processes.VP_SAMPLE) for f in (processes.VP_FORM, processes.EXPLODING_FORM)),
    (processes.FLOW, processes.FLOW_FORM),
]


@pytest.mark.parametrize("process, form", STEPPED_FORMS, ids=lambda x: x.name)
def test_split_recovers_clean_latent_and_noise_from_the_exact_prediction(process, form):
    """For a latent written in any form, the prediction the process defines splits back into (x0, noise)."""
    x0, noise, level = torch.randn(2, 3), torch.randn(2, 3), torch.tensor(0.6, dtype=torch.float64)
    a, b = process.form.coefficients(level)
    output = {"epsilon": noise, "sample": x0, "v_prediction": a * noise - b * x0, "flow": noise - x0}[process.prediction]
    x = processes.renoise(form, x0, noise, level)
    got_x0, got_noise = process.split(x, output, level, form)
    torch.testing.assert_close(got_x0, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_noise, noise, atol=1e-5, rtol=1e-5)


def test_frame_folded_noise_is_drawn_per_frame():
    """Image models draw (B*F, C, H, W) as their pipelines do; the video layout holds the same frames."""
    folded = ConstantDenoiser(0.0)
    folded.frame_folded = True
    noise = sampling.initial_noise(folded, (1, 4, 3, 2, 2), torch.Generator().manual_seed(0))
    reference = torch.randn((3, 4, 2, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise[0, :, 1], reference[1])

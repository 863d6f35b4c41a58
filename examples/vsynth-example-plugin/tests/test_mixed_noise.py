"""The VDM that owns its initial noise: shared across frames by shared_noise, ZeroScope's at 0."""

import pytest
import torch

from vsynth.core.diffusion import sampling
from vsynth.testing import load_tiny_model

SHAPE = (1, 4, 6, 8, 8)


def draw(model, seed=0):
    return sampling.initial_noise(model.denoiser, SHAPE, torch.Generator().manual_seed(seed))


def test_no_shared_noise_is_zeroscopes_noise(zeroscope):
    assert torch.equal(draw(load_tiny_model("zeroscope-mixednoise", shared_noise=0.0)), draw(zeroscope))


def test_all_shared_noise_is_one_noise_for_every_frame():
    noise = draw(load_tiny_model("zeroscope-mixednoise", shared_noise=1.0))
    assert torch.equal(noise, noise[:, :, :1].expand_as(noise))


@pytest.mark.parametrize("shared", [0.3, 0.7])
def test_frames_correlate_by_the_shared_share_and_stay_unit_gaussian(shared):
    noise = sampling.initial_noise(load_tiny_model("zeroscope-mixednoise", shared_noise=shared).denoiser, (1, 4, 2, 64, 64), torch.Generator().manual_seed(0))
    first, second = noise[0, :, 0].flatten(), noise[0, :, 1].flatten()
    assert abs(torch.corrcoef(torch.stack([first, second]))[0, 1].item() - shared) < 0.05
    assert abs(noise.std().item() - 1.0) < 0.05


def test_sampling_goes_through_the_wrapped_zeroscope(zeroscope):
    """Only the noise is the plugin's: from the same noise, the predictions are ZeroScope's."""
    model = load_tiny_model("zeroscope-mixednoise")
    latents = draw(model)
    cond = model.denoiser.condition("a ball", "")
    torch.testing.assert_close(model.denoiser.predict_noise(latents, 981, cond, 7.5), zeroscope.denoiser.predict_noise(latents, 981, cond, 7.5))

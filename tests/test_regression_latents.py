"""Today's results kept: every bridge on the tiny models gives the latents recorded before the core
became neutral to the noise process (tests/regression_cases.py), within 1e-6 relative."""

import pytest
import torch
from safetensors.torch import load_file

from tests.regression_cases import CASES, FILE, final_latents


@pytest.fixture(scope="module")
def recorded():
    return load_file(FILE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_latents_of_today_are_kept(name, recorded):
    latents = final_latents(name)
    torch.testing.assert_close(latents, recorded[name], rtol=1e-6, atol=1e-6 * recorded[name].abs().max().item())

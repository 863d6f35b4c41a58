"""The SDEdit bridge: strength decides how many VDM steps run, and 0 keeps the IDM frames."""

import pytest
import torch

from vsynth.core.run.evals import EvalCounter
from vsynth.core.run.progress import Stages
from vsynth.testing import bridge_inputs, load_bridge

STEPS = 2


def run(idm, vdm, source_frames, strength):
    bridge = load_bridge("sdedit", strength=strength)
    counter = EvalCounter()
    counter.attach(vdm.denoiser.unet, "vdm")
    try:
        inputs = bridge_inputs(idm, source_frames, steps=STEPS)
        result = bridge.run(idm, vdm, inputs, torch.Generator().manual_seed(0), Stages())
    finally:
        counter.detach()
    return result, counter.calls["vdm"]


def test_strength_zero_returns_the_idm_frames_and_runs_no_vdm_step(crossframe, zeroscope, source_frames):
    result, vdm_calls = run(crossframe, zeroscope, source_frames, 0.0)
    assert vdm_calls == 0
    assert (result.codec.decode(result.latents) == result.intermediates["idm_frames"]).all()


@pytest.mark.parametrize("strength, steps", [(0.5, 1), (1.0, 2)])
def test_strength_sets_the_vdm_steps(crossframe, zeroscope, source_frames, strength, steps):
    result, vdm_calls = run(crossframe, zeroscope, source_frames, strength)
    assert vdm_calls == steps
    assert result.latents.shape == (1, 4, len(source_frames), 8, 8)
    assert not (result.codec.decode(result.latents) == result.intermediates["idm_frames"]).all()

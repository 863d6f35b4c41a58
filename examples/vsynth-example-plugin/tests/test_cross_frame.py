"""Cross-frame attention: every frame attends to the first one, and only that changes."""

import pytest
import torch

from vsynth.testing import bridge_inputs
from vsynth_example_plugin.cross_frame import CrossFrameAttnProcessor


def eps(model, latents, source_frames, guidance):
    """The model's noise prediction at t=501 with its control maps from ``source_frames``."""
    inputs = bridge_inputs(model, source_frames)
    cond = model.denoiser.condition(inputs.image_prompt, inputs.negative_prompt, **inputs.frame_inputs.extras)
    return model.denoiser.predict_noise(latents, torch.tensor(501), cond, guidance)


@pytest.fixture
def latents(source_frames):
    frames = source_frames.shape[0]
    return torch.randn((1, 4, frames, 8, 8), generator=torch.Generator().manual_seed(0))


def test_only_self_attention_of_the_unet_is_replaced(crossframe):
    processors = crossframe.denoiser.unet.attn_processors
    assert {isinstance(p, CrossFrameAttnProcessor) for name, p in processors.items() if ".attn1." in name} == {True}
    assert not any(isinstance(p, CrossFrameAttnProcessor) for name, p in processors.items() if ".attn1." not in name)
    assert not any(isinstance(p, CrossFrameAttnProcessor) for p in crossframe.denoiser.controlnet.attn_processors.values())


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_first_frame_is_the_plain_model_and_the_others_attend_to_it(canny, crossframe, latents, source_frames, guidance):
    plain, cross = eps(canny, latents, source_frames, guidance), eps(crossframe, latents, source_frames, guidance)
    torch.testing.assert_close(cross[:, :, 0], plain[:, :, 0], atol=1e-5, rtol=1e-4)
    for k in range(1, latents.shape[2]):
        assert (cross[:, :, k] - plain[:, :, k]).abs().max() > 1e-3


def test_identical_frames_give_the_plain_model(canny, crossframe, latents, source_frames):
    """Attending to the first frame is attending to oneself when every frame is the first."""
    same_latents = latents[:, :, :1].expand_as(latents).contiguous()
    same_frames = source_frames[:1].repeat(len(source_frames), axis=0)
    torch.testing.assert_close(
        eps(crossframe, same_latents, same_frames, 7.5), eps(canny, same_latents, same_frames, 7.5), atol=1e-5, rtol=1e-4
    )


def test_image_inversion_runs_with_cross_frame_attention(canny, crossframe, latents):
    """Both denoisers share the UNet: the inversion one must set the processor's state too."""
    cond = crossframe.inversion_denoiser.condition("")
    cross = crossframe.inversion_denoiser.predict_noise(latents, torch.tensor(1), cond, 1.0)
    plain = canny.inversion_denoiser.predict_noise(latents, torch.tensor(1), canny.inversion_denoiser.condition(""), 1.0)
    torch.testing.assert_close(cross[:, :, 0], plain[:, :, 0], atol=1e-5, rtol=1e-4)
    assert (cross[:, :, 1:] - plain[:, :, 1:]).abs().max() > 1e-3

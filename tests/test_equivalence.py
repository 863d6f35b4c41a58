"""vsynth's loops equal the diffusers reference pipelines on the same tiny components and seed."""

import pytest
import torch
from diffusers import StableDiffusionControlNetPipeline, TextToVideoSDPipeline

from tests.conftest import load_tiny
from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.inputs import Sources

STEPS, GUIDANCE, PROMPT = 4, 7.5, "a red ball"
# Latents are O(1); the pipelines encode one prompt per frame in a batch where vsynth encodes it once,
# and batched matrix products round differently by batch size, so "equal" means within 1e-4.
TOL = dict(atol=1e-4, rtol=1e-4)


def controlnet_pipeline(idm):
    d = idm.denoiser
    return StableDiffusionControlNetPipeline(
        vae=idm.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, controlnet=d.controlnet,
        scheduler=d.new_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def ours_controlnet(idm, frames, seed=0):
    inputs = idm.prepare(Sources(video=frames))
    cond = idm.denoiser.condition(PROMPT, "", **inputs.extras)
    f, h, w = frames.shape[:3]
    noise = sampling.initial_noise(idm.denoiser, (1, 4, f, h // 8, w // 8), torch.Generator().manual_seed(seed))
    return sampling.sample(idm.denoiser, noise, cond, steps=STEPS, guidance=GUIDANCE), inputs


def reference_controlnet(idm, control, seed=0):
    f, _, h, w = control.shape
    return controlnet_pipeline(idm)(
        prompt=[PROMPT] * f, image=control, height=h, width=w, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(seed), output_type="latent",
    ).images  # fmt: skip


def test_batched_controlnet_frames_equal_the_diffusers_pipeline(canny, source_frames):
    ours, inputs = ours_controlnet(canny, source_frames)
    reference = reference_controlnet(canny, inputs.extras["control"])  # (F, C, H, W)
    assert ours.shape == (1, 4, 3, 8, 8)
    torch.testing.assert_close(ours[0].permute(1, 0, 2, 3), reference, **TOL)
    # the control maps differ per frame and matter: frames are not copies of each other
    assert not torch.allclose(reference[0], reference[1], atol=1e-3)


def test_frames_chunked_by_batch_size_match_one_batch(source_frames):
    chunked = load_tiny("controlnet-canny", batch_size=2)
    ours, inputs = ours_controlnet(chunked, source_frames)
    reference = reference_controlnet(chunked, inputs.extras["control"])
    torch.testing.assert_close(ours[0].permute(1, 0, 2, 3), reference, **TOL)


def test_control_maps_change_the_result(canny, source_frames):
    """Guards the test above: with other control maps the latents must differ."""
    ours, _ = ours_controlnet(canny, source_frames)
    other, _ = ours_controlnet(canny, source_frames[::-1].copy())
    assert not torch.allclose(ours, other, atol=1e-3)


@pytest.mark.parametrize("frames", [1, 4])
def test_zeroscope_sampling_equals_text_to_video_pipeline(zeroscope, frames):
    d = zeroscope.denoiser
    noise = sampling.initial_noise(d, (1, 4, frames, 8, 8), torch.Generator().manual_seed(0))
    ours = sampling.sample(d, noise, d.condition(PROMPT, ""), steps=STEPS, guidance=GUIDANCE)
    pipe = TextToVideoSDPipeline(
        vae=zeroscope.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, scheduler=d.new_scheduler()
    )
    reference = pipe(
        prompt=PROMPT, num_frames=frames, height=64, width=64, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(0), output_type="latent",
    ).frames  # fmt: skip
    torch.testing.assert_close(ours, reference, **TOL)


def test_zeroscope_uses_its_own_text_encoder(canny, zeroscope):
    """ZeroScope's embeddings have their own width (1024 for real, 48 tiny) unlike SD1.5's (768, 32 tiny)."""
    assert zeroscope.denoiser.encode_prompt(PROMPT).shape[-1] != canny.denoiser.encode_prompt(PROMPT).shape[-1]

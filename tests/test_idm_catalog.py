"""The image-model catalog: each IDM's batched frames equal its diffusers pipeline on tiny components."""

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionAdapterPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
)
from PIL import Image

from tests.conftest import load_tiny
from tests.test_equivalence import TOL, reference_controlnet
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.inputs import Sources

STEPS, GUIDANCE, PROMPT = 4, 7.5, "a red ball"


def bridge_inputs(idm, frames, **changes):
    sources = Sources(video=frames)
    values = dict(
        frames=len(frames), height=frames.shape[1], width=frames.shape[2], steps=STEPS, guidance=GUIDANCE, vdm_steps=STEPS,
        vdm_guidance=GUIDANCE, prompt=PROMPT, image_prompt=PROMPT, negative_prompt="", sources=sources,
        frame_inputs=idm.prepare(sources),
    )  # fmt: skip
    return BridgeInputs(**{**values, **changes})


def ours(idm, frames, seed=0, **changes):
    inputs = bridge_inputs(idm, frames, **changes)
    return idm.generate(inputs, torch.Generator().manual_seed(seed))[0].permute(1, 0, 2, 3)  # (F, C, h, w)


def components(idm):
    d = idm.denoiser
    return dict(vae=idm.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, scheduler=d.new_scheduler(),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip


def pil(frames):
    return [Image.fromarray(f) for f in frames]


def call(pipe, frames, **kwargs):
    return pipe(
        prompt=[PROMPT] * len(frames), num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="latent",
        generator=torch.Generator().manual_seed(0), **kwargs,
    ).images  # fmt: skip


def test_openpose_with_precomputed_poses_equals_controlnet_pipeline(source_frames):
    """--condition-video maps go to the ControlNet as given."""
    idm = load_tiny("controlnet-openpose")
    poses = np.ascontiguousarray(255 - source_frames)  # any picture stands in for rendered skeletons
    inputs = idm.prepare(Sources(condition=poses))
    assert np.array_equal(inputs.condition_frames, poses)
    cond = idm.denoiser.condition(PROMPT, "", **inputs.extras)
    from vsynth.core.diffusion import sampling

    noise = sampling.initial_noise(idm.denoiser, (1, 4, 3, 8, 8), torch.Generator().manual_seed(0))
    latents = sampling.sample(idm.denoiser, noise, cond, steps=STEPS, guidance=GUIDANCE)
    reference = reference_controlnet(idm, inputs.extras["control"])
    torch.testing.assert_close(latents[0].permute(1, 0, 2, 3), reference, **TOL)


def test_canny_condition_video_replaces_detection(canny, source_frames):
    maps = np.ascontiguousarray(source_frames[::-1])
    assert np.array_equal(canny.prepare(Sources(video=source_frames, condition=maps)).condition_frames, maps)


@pytest.mark.parametrize("kind", ["canny", "depth"])
def test_t2i_adapter_equals_adapter_pipeline(kind, source_frames):
    idm = load_tiny(f"t2i-adapter-{kind}")
    maps = idm.prepare(Sources(video=source_frames)).condition_frames
    channels = idm.adapter.config.in_channels
    image = [Image.fromarray(m[..., 0]) if channels == 1 else Image.fromarray(m) for m in maps]
    pipe = StableDiffusionAdapterPipeline(adapter=idm.adapter, **components(idm))
    reference = call(pipe, source_frames, image=image, height=64, width=64)
    torch.testing.assert_close(ours(idm, source_frames), reference, **TOL)
    # the adapter matters
    plain = ours(load_tiny(f"t2i-adapter-{kind}", conditioning_scale=0.0), source_frames)
    assert not torch.allclose(plain, reference, atol=1e-3)


def test_instruct_pix2pix_equals_its_pipeline(source_frames):
    idm = load_tiny("instruct-pix2pix", image_guidance=1.5)
    pipe = StableDiffusionInstructPix2PixPipeline(**components(idm))
    reference = call(pipe, source_frames, image=pil(source_frames), image_guidance_scale=1.5)
    torch.testing.assert_close(ours(idm, source_frames), reference, **TOL)
    assert idm.inversion_denoiser.unet.config.in_channels == 4  # BIVDiff inverts with plain SD1.5


def test_instruct_pix2pix_chunked_frames_match(source_frames):
    whole = ours(load_tiny("instruct-pix2pix"), source_frames)
    torch.testing.assert_close(ours(load_tiny("instruct-pix2pix", batch_size=2), source_frames), whole, **TOL)


def test_sd15_text_to_image_equals_stable_diffusion_pipeline(source_frames):
    idm = load_tiny("sd15")
    reference = call(StableDiffusionPipeline(**components(idm), image_encoder=None), source_frames, height=64, width=64)
    torch.testing.assert_close(ours(idm, source_frames, sources=Sources()), reference, **TOL)


@pytest.mark.parametrize("strength", [0.5, 0.75])
def test_sd15_sdedit_equals_img2img_pipeline(strength, source_frames):
    idm = load_tiny("sd15", strength=strength)
    pipe = StableDiffusionImg2ImgPipeline(**components(idm), image_encoder=None)
    reference = call(pipe, source_frames, image=pil(source_frames), strength=strength)
    torch.testing.assert_close(ours(idm, source_frames), reference, **TOL)

"""FLUX.1 image models equal their diffusers pipelines on the tiny weights (same seed, same frames), and
run through the bridges with every output written."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SAMPLE_VIDEO, load_tiny
from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.inputs import Sources
from vsynth.plugins.idm.flux import pack
from vsynth.testing import bridge_inputs, run_cli

STEPS, PROMPT, TOKENS = 2, "a red ball", 16
# Latents are O(1); batched matrix products round differently by batch size: "equal" is within 1e-4.
TOL = dict(atol=1e-4, rtol=1e-4)


def flux_pipeline(cls, model, **extra):
    d = model.denoiser
    return cls(
        scheduler=d.new_scheduler(), vae=model.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer,
        text_encoder_2=d.text_encoder_2, tokenizer_2=d.tokenizer_2, transformer=d.unet, **extra,
    )  # fmt: skip


def latents_of(packed, frames, height=64, width=64):
    """The pipeline's packed output (F, L, 64) as vsynth's (1, 16, F, h, w)."""
    from vsynth.plugins.idm.flux import unpack

    return unpack(packed, height // 8, width // 8).permute(1, 0, 2, 3)[None]


def generate(model, frames, guidance, seed=0, **sources):
    inputs = bridge_inputs(model, frames, steps=STEPS, guidance=guidance, prompt=PROMPT)
    inputs.sources = Sources(**sources)
    model.configure(inputs)
    return model.generate(inputs, torch.Generator().manual_seed(seed))


def reference_kwargs(frames, guidance, seed=0):
    f, h, w = frames.shape[:3]
    return dict(
        prompt=[PROMPT] * f, height=h, width=w, num_inference_steps=STEPS, guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed), output_type="latent", max_sequence_length=TOKENS,
    )  # fmt: skip


def pil(frames):
    return [Image.fromarray(f) for f in frames]


@pytest.fixture(scope="module")
def flux_dev():
    return load_tiny("flux-dev", max_sequence_length=TOKENS)


def test_flux_dev_frames_equal_flux_pipeline(flux_dev, source_frames):
    from diffusers import FluxPipeline

    frames = source_frames[:2]
    ours = generate(flux_dev, frames, 3.5)
    reference = flux_pipeline(FluxPipeline, flux_dev)(**reference_kwargs(frames, 3.5)).images
    assert ours.shape == (1, 16, 2, 8, 8)
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)
    assert not torch.allclose(ours[:, :, 0], ours[:, :, 1], atol=1e-3)  # each frame its own noise
    # the guidance embedding matters: another value gives other frames
    assert not torch.allclose(ours, generate(flux_dev, frames, 1.0), atol=1e-3)

"""SD inpainting and outpainting on tiny models: equal to diffusers' StableDiffusionInpaintPipeline, masks as REFERENCE.md says."""

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline
from PIL import Image

from tests.conftest import load_tiny
from tests.test_equivalence import TOL
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.media.masks import outpaint_mask, parse_outpaint, read_mask
from vsynth.core.diffusion.inputs import Sources

SAMPLE_MASK = Path(__file__).parents[1] / "examples" / "shapes_mask.mp4"
STEPS, GUIDANCE, PROMPT = 4, 7.5, "a green ball"


@pytest.fixture(scope="module")
def inpaint():
    return load_tiny("sd-inpaint")


@pytest.fixture(scope="module")
def disc_masks():
    """uint8 (3, 64, 64): the example mask, a disc over the red ball of the source frames."""
    return read_mask(SAMPLE_MASK, frames=3, stride=4, size=(64, 64))


def ours(idm, frames, masks, seed=0):
    sources = Sources(video=frames, mask=masks)
    f, h, w, _ = frames.shape
    inputs = BridgeInputs(
        frames=f, height=h, width=w, steps=STEPS, guidance=GUIDANCE, vdm_steps=STEPS, vdm_guidance=GUIDANCE,
        prompt=PROMPT, image_prompt=PROMPT, negative_prompt="", sources=sources, frame_inputs=idm.prepare(sources),
    )  # fmt: skip
    return idm.generate(inputs, torch.Generator().manual_seed(seed))


def reference(idm, frames, masks, seed=0):
    d = idm.denoiser
    pipe = StableDiffusionInpaintPipeline(
        vae=d.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, scheduler=d.new_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    f, h, w, _ = frames.shape
    return pipe(
        prompt=[PROMPT] * f, image=[Image.fromarray(x) for x in frames], mask_image=[Image.fromarray(m) for m in masks],
        height=h, width=w, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(seed),
        output_type="latent",
    ).images  # fmt: skip  (F, C, h, w)


@pytest.mark.parametrize("kind", ["mask", "horizontal", "vertical"])
def test_frames_equal_the_diffusers_inpaint_pipeline(inpaint, source_frames, disc_masks, kind):
    """Same latents for the same seed: the noise and then the masked-image latents drawn from the generator in the
    pipeline's order, the mask binarized and resized, [latents, mask, masked latents] fed to the UNet."""
    masks = disc_masks if kind == "mask" else outpaint_mask(parse_outpaint(kind), 3, 64, 64)
    latents = ours(inpaint, source_frames, masks)
    assert latents.shape == (1, 4, 3, 8, 8)
    torch.testing.assert_close(latents[0].permute(1, 0, 2, 3), reference(inpaint, source_frames, masks), **TOL)


def test_frames_chunked_by_batch_size_equal_the_pipeline(source_frames, disc_masks):
    chunked = load_tiny("sd-inpaint", batch_size=2)
    latents = ours(chunked, source_frames, disc_masks)
    torch.testing.assert_close(latents[0].permute(1, 0, 2, 3), reference(chunked, source_frames, disc_masks), **TOL)


def test_pixels_under_the_mask_never_reach_the_model(inpaint, source_frames, disc_masks):
    """Only the kept part of a frame conditions the UNet: repainting the masked part changes nothing,
    repainting the kept part does."""
    base = ours(inpaint, source_frames, disc_masks)
    under = np.where(disc_masks[..., None] == 255, np.uint8(0), source_frames)
    outside = np.where(disc_masks[..., None] == 255, source_frames, np.uint8(0))
    torch.testing.assert_close(ours(inpaint, under, disc_masks), base)
    assert not torch.allclose(ours(inpaint, outside, disc_masks), base, atol=1e-3)


def test_prepare_binarizes_the_mask_and_shows_the_masked_frames(inpaint, source_frames, disc_masks):
    soft = np.where(disc_masks == 255, np.uint8(200), np.uint8(100))  # thresholded at 0.5, like the mask processor
    inputs = inpaint.prepare(Sources(video=source_frames, mask=soft))
    mask = inputs.extras["mask"]
    assert mask.shape == (3, 1, 8, 8) and set(mask.unique().tolist()) == {0.0, 1.0}
    # the latent mask is the nearest-neighbour resize of the pixel mask (every 8th pixel)
    torch.testing.assert_close(mask[:, 0], torch.from_numpy(disc_masks[:, ::8, ::8] / 255.0).float())
    shown = inputs.condition_frames
    assert shown.shape == source_frames.shape
    assert (shown[disc_masks == 255] == 128).all() and (shown[disc_masks == 0] == source_frames[disc_masks == 0]).all()


def test_image_inversion_uses_the_plain_sd15_unet(inpaint):
    assert inpaint.denoiser.unet.config.in_channels == 9
    assert inpaint.inversion_denoiser.unet.config.in_channels == 4
    assert inpaint.unets() == [inpaint.denoiser.unet, inpaint.inversion_denoiser.unet]


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_outpaint_presets_are_bivdiffs_masks(size):
    """REFERENCE.md: horizontal regenerates the top and bottom quarter, vertical the left and right quarter,
    as the official prepare_outpainting_mask draws them (sizes are multiples of 8)."""
    h, w = size
    horizontal = outpaint_mask(parse_outpaint("horizontal"), 2, h, w)
    vertical = outpaint_mask(parse_outpaint("vertical"), 2, h, w)
    assert horizontal.shape == vertical.shape == (2, h, w) and horizontal.dtype == np.uint8
    expected_h = np.zeros((h, w), np.uint8)
    expected_h[: h // 4] = expected_h[h // 4 * 3 :] = 255
    expected_v = np.zeros((h, w), np.uint8)
    expected_v[:, : w // 4] = expected_v[:, w // 4 * 3 :] = 255
    assert (horizontal == expected_h).all() and (vertical == expected_v).all()


def test_outpaint_explicit_margins():
    mask = outpaint_mask(parse_outpaint("0.125,0.25,0,0.1"), 1, 40, 80)[0]  # top 5 rows, right 20, left 8 columns
    assert (mask[:5] == 255).all() and (mask[:, -20:] == 255).all() and (mask[:, :8] == 255).all()
    assert (mask[5:, 8:-20] == 0).all()
    assert (outpaint_mask(parse_outpaint("0.25,0,0.25,0"), 1, 64, 64) == outpaint_mask(parse_outpaint("horizontal"), 1, 64, 64)).all()


def test_one_image_masks_every_frame_and_a_bad_one_is_refused_at_planning(tmp_path):
    """A still region (a logo, a watermark) is the common mask: a PNG was refused ('unsupported type')."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VideoError

    still = np.zeros((100, 100), np.uint8)
    still[30:70, 30:70] = 255
    Image.fromarray(still).save(tmp_path / "mask.png")
    mask = read_mask(tmp_path / "mask.png", frames=3, stride=4, size=(64, 64))
    assert mask.shape == (3, 64, 64) and (mask == mask[:1]).all() and set(np.unique(mask)) == {0, 255}
    assert 0.12 < (mask[0] > 0).mean() < 0.2  # the middle 40% square: 16% of the frame
    settings = dict(idm="sd-inpaint", vdm="zeroscope", video=Path(__file__).parents[1] / "examples" / "shapes.mp4", prompt="a ball",
                    tiny=True, frames=2, height=64, width=64, out=tmp_path / "out")  # fmt: skip
    assert plan_run(RunConfig(mask=tmp_path / "mask.png", **settings)).frames.mask.shape == (2, 64, 64)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match="bad.png cannot be read as an image"):
        plan_run(RunConfig(mask=tmp_path / "bad.png", **settings))


def test_a_mask_that_regenerates_nothing_is_refused_and_one_drawn_as_transparency_is_read(tmp_path):
    """An all-black mask, or outpaint margins under a pixel, ran to the end and regenerated nothing; a mask drawn in
    the alpha channel (black pixels, the region opaque) read as all black."""
    from vsynth.errors import VsynthInputError

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(VsynthInputError, match=r"--mask .*black.png is black everywhere at 64x64, so nothing would be regenerated"):
        read_mask(tmp_path / "black.png", frames=2, stride=1, size=(64, 64))
    with pytest.raises(VsynthInputError, match=r"--outpaint 0.001,0,0,0: under one pixel at 64x64"):
        outpaint_mask(parse_outpaint("0.001,0,0,0"), 2, 64, 64)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24, 3] = 255  # the region only in the alpha channel
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    mask = read_mask(tmp_path / "alpha.png", frames=2, stride=1, size=(64, 64))
    assert 0.2 < (mask[0] > 0).mean() < 0.3 and mask[0, 32, 32] == 255 and mask[0, 0, 0] == 0

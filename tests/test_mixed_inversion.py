"""BIVDiff's Mixed Inversion bridge on tiny models: which inversions run, and the mix."""

import pytest
import torch

from vsynth.core.diffusion import processes, sampling
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.inputs import Sources
from vsynth.core.run.evals import EvalCounter
from vsynth.core.run.progress import Stages
from vsynth.core.host.registry import get_registry
from vsynth.plugins.bridges import mixed_inversion
from vsynth.testing import load_tiny_model

STEPS = 3


def run_bridge(canny, zeroscope, source_frames, vdm_steps=STEPS, vdm_guidance=7.5, negative_prompt="", **params):
    spec = get_registry().bridge("mixed-inversion")
    bridge = spec.load_impl()(spec, spec.params(**params))
    inputs = BridgeInputs(
        frames=3, height=64, width=64, steps=STEPS, guidance=7.5, vdm_steps=vdm_steps,
        vdm_guidance=vdm_guidance,
        prompt="a ball", image_prompt="a ball",
        negative_prompt=negative_prompt, sources=Sources(video=source_frames), frame_inputs=canny.prepare(Sources(video=source_frames)),
    )  # fmt: skip
    counter = EvalCounter()
    counter.attach(canny.denoiser.unet, "idm")
    counter.attach(zeroscope.denoiser.unet, "vdm")
    stages = Stages()
    try:
        result = bridge.run(canny, zeroscope, inputs, torch.Generator().manual_seed(0), stages)
    finally:
        counter.detach()
    return result, counter, stages


@pytest.fixture
def recorded(monkeypatch):
    """Record every inversion (which denoiser, result) and every mix (inputs, result)."""
    calls = {"invert": [], "mix": []}
    invert, mix = sampling.bivdiff_invert, mixed_inversion.mix

    def recording_invert(denoiser, *args, **kwargs):
        out = invert(denoiser, *args, **kwargs)
        calls["invert"].append((denoiser, out))
        return out

    def recording_mix(z_image, z_video, ratio):
        out = mix(z_image, z_video, ratio)
        calls["mix"].append((z_image, z_video, ratio, out))
        return out

    monkeypatch.setattr(sampling, "bivdiff_invert", recording_invert)
    monkeypatch.setattr(mixed_inversion, "mix", recording_mix)
    return calls


def test_ratio_one_is_pure_image_inversion_and_runs_no_video_inversion(canny, zeroscope, source_frames, recorded):
    result, counter, stages = run_bridge(canny, zeroscope, source_frames, mixing_ratio=1.0)
    assert [d for d, _ in recorded["invert"]] == [canny.inversion_denoiser]
    (z_image, z_video, ratio, mixed), = recorded["mix"]
    assert z_video is None and torch.equal(mixed, recorded["invert"][0][1])
    # the VDM only ran temporal smoothing: one CFG call per step over 3 frames
    assert counter.calls["vdm"] == STEPS and counter.frame_evals["vdm"] == STEPS * 2 * 3
    assert "video inversion" not in stages.timings
    assert result.latents.shape == (1, 4, 3, 8, 8) and result.intermediates["idm_frames"].shape == (3, 64, 64, 3)


def test_mix_is_applied_once_with_the_ratio(canny, zeroscope, source_frames, recorded):
    run_bridge(canny, zeroscope, source_frames, mixing_ratio=0.25)
    assert [d for d, _ in recorded["invert"]] == [canny.inversion_denoiser, zeroscope.denoiser]
    assert len(recorded["mix"]) == 1
    z_image, z_video, ratio, mixed = recorded["mix"][0]
    assert ratio == 0.25 and not torch.allclose(z_image, z_video)
    torch.testing.assert_close(mixed, 0.25 * z_image + 0.75 * z_video)


def test_ratio_zero_skips_image_inversion(canny, zeroscope, source_frames, recorded):
    _, counter, _ = run_bridge(canny, zeroscope, source_frames, mixing_ratio=0.0)
    assert [d for d, _ in recorded["invert"]] == [zeroscope.denoiser]
    # idm UNet: frame-wise generation only (CFG, 3 frames, one batch per step)
    assert counter.calls["idm"] == STEPS and counter.frame_evals["idm"] == STEPS * 2 * 3


def test_inversion_uses_the_negative_prompt_by_default(canny, zeroscope, source_frames, monkeypatch):
    prompts = []
    condition = type(canny.inversion_denoiser).condition

    def spy(self, prompt, negative_prompt=None, **extras):
        if self is canny.inversion_denoiser:
            prompts.append(prompt)
        return condition(self, prompt, negative_prompt, **extras)

    monkeypatch.setattr(type(canny.inversion_denoiser), "condition", spy)
    run_bridge(canny, zeroscope, source_frames)
    run_bridge(canny, zeroscope, source_frames, inversion_prompt="prompt")
    assert prompts == ["", "a ball"]


def test_same_seed_same_result(canny, zeroscope, source_frames):
    first, _, _ = run_bridge(canny, zeroscope, source_frames)
    second, _, _ = run_bridge(canny, zeroscope, source_frames)
    assert torch.equal(first.latents, second.latents)


# POS_PROMPT and NEG_PROMPT of the official code (MCG-NJU/BIVDiff, models/ControlNet/infer.py), typo included
OFFICIAL_SUFFIX = " ,best quality, extremely detailed, HD, ultra-realistic, 8K, HQ, masterpiece, trending on artstation, art, smooth"
OFFICIAL_NEGATIVE = (
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer difits, cropped, worst quality, "
    "low quality, deformed body, bloated, ugly, unrealistic"
)


@pytest.fixture
def conditions(monkeypatch):
    """Every (prompt, negative prompt) a denoiser is conditioned on, in order."""
    seen = []
    condition = Denoiser.condition

    def spy(self, prompt, negative_prompt=None, **extras):
        seen.append((prompt, negative_prompt))
        return condition(self, prompt, negative_prompt, **extras)

    monkeypatch.setattr(Denoiser, "condition", spy)
    return seen


@pytest.mark.parametrize(
    "preset, negative, expected",
    [
        ("none", "", ("a ball", "")),
        ("bivdiff", "", ("a ball" + OFFICIAL_SUFFIX, OFFICIAL_NEGATIVE)),
        ("bivdiff", "blurry", ("a ball" + OFFICIAL_SUFFIX, "blurry")),  # an explicit negative prompt wins
    ],
)
def test_bivdiff_prompt_preset_gives_every_stage_the_official_prompts(preset, negative, expected, canny, zeroscope, source_frames, conditions):
    run_bridge(canny, zeroscope, source_frames, negative_prompt=negative, prompt_preset=preset)
    prompt, negative = expected
    # frame-wise generation, image inversion (with the negative prompt, as the official code), temporal smoothing
    assert conditions == [(prompt, negative), (negative, None), (prompt, negative)]


def test_bivdiff_prompt_preset_is_plain_for_the_idms_the_official_code_gives_none(zeroscope, source_frames, conditions):
    """The official T2I-Adapter, Prompt-to-Prompt and inpainting modules set both strings to ''."""
    adapter = load_tiny_model("t2i-adapter-canny")
    run_bridge(adapter, zeroscope, source_frames, prompt_preset="bivdiff")
    assert conditions == [("a ball", ""), ("", None), ("a ball", "")]


@pytest.mark.parametrize("vdm_name, vdm_steps, vdm_guidance", [("animatediff", 3, 7.5), ("animatediff-lightning", 4, 1.0)])
def test_both_inversions_end_where_a_vdm_with_its_own_schedule_starts(vdm_name, vdm_steps, vdm_guidance, canny, source_frames, recorded, monkeypatch):
    """AnimateDiff's linear betas and Lightning's Euler differ from SD1.5's schedule: both sides are inverted to the
    noise level abar* at which the VDM's smoothing starts, so that the mix is a latent at that level.

    Both denoisers predict the true noise of a pure-noise-like clean latent x0, so each inversion lands on
    sqrt(abar*) x0 + sqrt(1 - abar*) eps: variance ~1 in VP form, init_noise_sigma^2 in Euler's sigma form.
    """
    vdm = load_tiny_model(vdm_name)
    x0, eps = torch.randn(2, 1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3)).unbind(0)
    monkeypatch.setattr(canny, "generate", lambda inputs, generator, advance=None: x0)
    for d in (canny.inversion_denoiser, vdm.denoiser):
        monkeypatch.setattr(d, "predict", lambda latents, t, cond, guidance: eps.to(latents.dtype))
    run_bridge(canny, vdm, source_frames, vdm_steps=vdm_steps, vdm_guidance=vdm_guidance, mixing_ratio=0.5, reencode=False)

    scheduler = vdm.denoiser.new_scheduler()
    scheduler.set_timesteps(vdm_steps)
    level = processes.VP_FORM.coefficients(sampling.Schedule(vdm.denoiser, vdm_steps).level(0))[0] ** 2  # abar at the VDM's first step
    # the official image inversion's first step evaluates the clean latent as one at t = 1
    abar_1 = canny.inversion_denoiser.scheduler.alphas_cumprod[1]
    x0_image = (x0 - (1 - abar_1).sqrt() * eps) / abar_1.sqrt()
    expected = 0.5 * (level.sqrt() * x0_image + (1 - level).sqrt() * eps) + 0.5 * (level.sqrt() * x0 + (1 - level).sqrt() * eps)
    (_, _, _, mixed), = recorded["mix"]
    torch.testing.assert_close(mixed, expected, rtol=0, atol=1e-5)
    assert mixed.var().item() == pytest.approx(1.0, abs=0.15)
    schedule = sampling.Schedule(vdm.denoiser, vdm_steps)
    start = processes.convert(mixed, schedule.level(0), processes.VP_FORM, schedule.form)  # what the first smoothing step receives
    assert start.std().item() == pytest.approx(float(scheduler.init_noise_sigma), rel=0.1)

"""FLUX.1 image models equal their diffusers pipelines on the tiny weights (same seed, same frames), and
run through the bridges with every output written."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SAMPLE_VIDEO, load_tiny
from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.inputs import Sources
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
    """The model's frames for ``sources`` (none: from the prompt alone), prepared and configured as a run does."""
    inputs = bridge_inputs(None, frames, steps=STEPS, guidance=guidance, prompt=PROMPT)
    inputs.sources = Sources(**sources)
    inputs.frame_inputs = model.prepare(inputs.sources)
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


@pytest.mark.parametrize("name", ["flux-dev", "flux-schnell"])
def test_flux_frames_equal_flux_pipeline(name, source_frames):
    from diffusers import FluxPipeline

    model = load_tiny(name, max_sequence_length=TOKENS)
    frames = source_frames[:2]
    ours = generate(model, frames, 3.5)
    reference = flux_pipeline(FluxPipeline, model)(**reference_kwargs(frames, 3.5)).images
    assert ours.shape == (1, 16, 2, 8, 8)
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)
    assert not torch.allclose(ours[:, :, 0], ours[:, :, 1], atol=1e-3)  # each frame its own noise
    # dev's guidance embedding matters (another value, other frames); schnell has none
    other = generate(model, frames, 1.0)
    assert torch.allclose(ours, other) == (name == "flux-schnell")


def test_flux_canny_frames_equal_flux_control_pipeline(source_frames):
    from diffusers import FluxControlPipeline

    canny = load_tiny("flux-canny", max_sequence_length=TOKENS, batch_size=1)  # frames one by one: still the pipeline's
    frames = source_frames[:2]
    ours = generate(canny, frames, 30.0, video=frames)
    control = canny.prepare(Sources(video=frames)).extras["control"]  # (F, 3, H, W) in [-1, 1], as the pipeline preprocesses
    reference = flux_pipeline(FluxControlPipeline, canny)(control_image=control, **reference_kwargs(frames, 30.0)).images
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)
    # the control maps matter
    assert not torch.allclose(ours, generate(canny, frames[::-1].copy(), 30.0, video=frames[::-1].copy()).flip(2), atol=1e-3)


def test_flux_fill_frames_equal_flux_fill_pipeline(source_frames):
    from diffusers import FluxFillPipeline

    fill = load_tiny("flux-fill", max_sequence_length=TOKENS)
    frames = source_frames[:2]
    mask = np.zeros(frames.shape[:3], np.uint8)
    mask[:, 16:48, 8:40] = 255
    ours = generate(fill, frames, 30.0, video=frames, mask=mask)
    reference = flux_pipeline(FluxFillPipeline, fill)(image=pil(frames), mask_image=pil(mask), **reference_kwargs(frames, 30.0)).images
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)


def test_flux_kontext_frames_equal_flux_kontext_pipeline(source_frames):
    from diffusers import FluxKontextPipeline

    kontext = load_tiny("flux-kontext", max_sequence_length=TOKENS)
    frames = source_frames[:2]
    ours = generate(kontext, frames, 2.5, video=frames)
    f, h, w = frames.shape[:3]
    reference = flux_pipeline(FluxKontextPipeline, kontext)(
        image=pil(frames), max_area=h * w, _auto_resize=False, **reference_kwargs(frames, 2.5)
    ).images
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)
    # the reference frames matter
    other = generate(kontext, frames[::-1].copy(), 2.5, video=frames[::-1].copy())
    assert not torch.allclose(ours, other, atol=1e-3)


def test_flux_dev_sdedit_equals_flux_img2img_pipeline(source_frames):
    from diffusers import FluxImg2ImgPipeline

    flux_dev = load_tiny("flux-dev", max_sequence_length=TOKENS, strength=0.5)  # half of the 2 steps: from step 1
    frames = source_frames[:2]
    ours = generate(flux_dev, frames, 3.5, video=frames)
    reference = flux_pipeline(FluxImg2ImgPipeline, flux_dev)(image=pil(frames), strength=0.5, **reference_kwargs(frames, 3.5)).images
    torch.testing.assert_close(ours, latents_of(reference, 2), **TOL)
    # the source shows through: frames from noise alone differ
    assert not torch.allclose(ours, generate(flux_dev, frames, 3.5), atol=1e-3)


MASK_VIDEO = SAMPLE_VIDEO.with_name("shapes_mask.mp4")
TINY_RUN = ["run", "--tiny", "--prompt", "a red ball", "--frames", "2", "--height", "64", "--width", "64", "--vdm-steps", "2",
            "-o", f"max_sequence_length={TOKENS}", "--quiet"]  # fmt: skip

CLI_RUNS = {
    "flux-canny-encapsulated": (
        ["--idm", "flux-canny", "--vdm", "zeroscope", "--bridge", "encapsulated", "--video", SAMPLE_VIDEO, "--steps", "4"],
        {"condition.mp4"},
    ),
    "flux-fill-mixed-inversion": (
        ["--idm", "flux-fill", "--vdm", "animatediff", "--bridge", "mixed-inversion", "--video", SAMPLE_VIDEO, "--mask", MASK_VIDEO,
         "--steps", "2"],
        {"condition.mp4", "idm_frames.mp4"},
    ),  # fmt: skip
    "flux-fill-outpaint-mixed-inversion": (
        ["--idm", "flux-fill", "--vdm", "animatediff", "--bridge", "mixed-inversion", "--video", SAMPLE_VIDEO, "--outpaint",
         "horizontal", "--steps", "2"],
        {"condition.mp4", "idm_frames.mp4"},
    ),  # fmt: skip
    "flux-dev-encapsulated-without-video": (
        ["--idm", "flux-dev", "--vdm", "zeroscope", "--bridge", "encapsulated", "--steps", "4"],
        {"t2v_frames.mp4"},
    ),
    "flux-kontext-mixed-inversion": (
        ["--idm", "flux-kontext", "--vdm", "zeroscope", "--bridge", "mixed-inversion", "--video", SAMPLE_VIDEO,
         "--idm-prompt", "make it blue", "--steps", "2"],
        {"idm_frames.mp4"},
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(CLI_RUNS))
def test_tiny_runs_write_every_output(name, tmp_path):
    import json

    args, own = CLI_RUNS[name]
    out = tmp_path / "out"
    result = run_cli(*TINY_RUN, *args, "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"video.mp4", "video.gif", "grid.png", "run.json", *own}
    record = json.loads((out / "run.json").read_text())
    assert record["models"]["idm"]["sampling"]["process"] == "flow"
    assert record["codecs"]["idm"]["latent_space"] == "flux-vae"  # transcoded through pixels to the VDM's sd-vae
    if "mixed-inversion" in name:
        assert record["bridge"]["params"]["mixing_ratio"] == 0.0  # across latent spaces only the video side runs


def test_default_guidance_and_steps_are_the_pipelines(tmp_path):
    """Without --steps/--guidance a FLUX IDM samples as its pipeline (Fill: 50 steps at 30); the VDM keeps its own."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run

    config = RunConfig(idm="flux-fill", vdm="zeroscope", prompt="a ball", video=SAMPLE_VIDEO, mask=MASK_VIDEO, tiny=True,
                       frames=2, height=64, width=64, out=tmp_path / "o")  # fmt: skip
    sampling = plan_run(config).sampling
    assert (sampling.steps, sampling.guidance, sampling.vdm_steps, sampling.vdm_guidance) == (50, 30.0, 50, 7.5)


def test_models_shows_the_guidance_kind():
    assert "guidance: distilled" in run_cli("models", "flux-dev").output
    assert "guidance: none" in run_cli("models", "flux-schnell").output


def test_memory_planner_says_flux_needs_sequential_offload_on_a_24gb_gpu():
    """FLUX.1's 12B transformer (23.8 GB in bf16) and T5-XXL do not fit a 24 GB GPU, even one at a time
    (--offload model); group and sequential offload do. Counted from layouts.json, nothing on disk."""
    import dataclasses

    from vsynth.core.host.registry import get_registry
    from vsynth.core.run.memory import GIB, check_fits, estimate
    from vsynth.errors import InsufficientMemoryError

    registry = get_registry()
    specs = {"idm": registry.model("flux-dev"), "vdm": registry.model("zeroscope")}
    sources = {role: {w.role: w.id for w in spec.weights} for role, spec in specs.items()}
    params = {role: spec.params() for role, spec in specs.items()}
    plan = estimate(specs, sources, params, frames=8, height=512, width=512, guidance={"idm": 3.5, "vdm": 7.5},
                    dtype="bfloat16", device="cpu", offload="none")  # fmt: skip
    flux_bytes = sum(p.bytes for p in plan.parts if p.key.startswith("black-forest-labs/") or p.key.startswith("idm:"))
    # 11.9 B + 4.76 B + 0.12 B parameters at 2 bytes, the VAE's 0.08 B at 4 (the planner counts a force_upcast VAE in float32)
    assert flux_bytes / 1e9 == pytest.approx(33.9, abs=0.1)
    assert plan.peaks["none"] > plan.peaks["model"] > 24 * GIB > plan.peaks["sequential"]
    on_gpu = dataclasses.replace(plan, device="cuda:0", free=24 * GIB)
    with pytest.raises(InsufficientMemoryError, match=r"add --offload group \(about 4.98 GiB\)"):  # before sequential: as little, faster
        check_fits(on_gpu)
    # the options it offers are the run's own: a text-to-video run has no IDM's batch_size ('unknown option' when followed)
    with pytest.raises(InsufficientMemoryError, match=r"lower --frames, --height, --width or -o window; or pass"):
        check_fits(dataclasses.replace(plan, free=GIB), ("window",))
    assert plan.peaks["sequential"] < plan.peaks["group"] < 24 * GIB


def test_a_bridge_runs_a_flux_idm_configured_by_the_testing_helper(source_frames):
    """Plugin authors test bridges with vsynth.testing.bridge_inputs: it configures the IDM as a run does."""
    from vsynth.core.run.progress import Stages
    from vsynth.testing import load_bridge

    kontext = load_tiny("flux-kontext", max_sequence_length=TOKENS)
    inputs = bridge_inputs(kontext, source_frames[:2], steps=4, guidance=2.5)
    result = load_bridge("idm-only").run(kontext, load_tiny("zeroscope"), inputs, torch.Generator().manual_seed(0), Stages())
    assert result.latents.shape == (1, 16, 2, 8, 8) and torch.isfinite(result.latents).all()


def test_flux_inversion_denoiser_inverts_its_flow(source_frames):
    """A FLUX IDM's inversion denoiser is its own transformer, inverted by the reverse Euler step of its flow:
    inverting clean latents to a level and denoising back from there returns them, closer with more steps."""
    model = load_tiny("flux-dev", max_sequence_length=TOKENS)
    frames = source_frames[:2]
    bridge_inputs(model, frames)  # configures the model for the frame size
    x0 = model.codec.encode(frames)
    cond = model.inversion_denoiser.condition(PROMPT)
    errors = []
    for steps in (25, 50):
        schedule = sampling.Schedule(model.inversion_denoiser, steps)
        start = steps // 5  # the same level for both: a fifth into the schedule
        z = sampling.invert(schedule, x0, cond, start)
        back = sampling.denoise(schedule, z, cond, start, guidance=1.0)
        errors.append((back - x0).abs().max().item())
    assert errors[1] < 0.1 and errors[1] < errors[0] / 1.5  # first order in the step size, as Euler

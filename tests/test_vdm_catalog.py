"""The video-model catalog: each VDM equals its diffusers pipeline, and each bridges with an IDM."""

import pytest
import torch
from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, TextToVideoSDPipeline

from tests.conftest import load_tiny
from tests.test_equivalence import TOL
from tests.test_mixed_inversion import run_bridge
from vsynth.core.diffusion import sampling

PROMPT = "a red ball"
VDMS = ("zeroscope", "modelscope", "animatediff", "animatediff-lightning")


@pytest.fixture(scope="module")
def vdms():
    return {name: load_tiny(name) for name in VDMS}


def ours(model, frames, steps, guidance, seed=0):
    d = model.denoiser
    noise = sampling.initial_noise(d, (1, 4, frames, 8, 8), torch.Generator().manual_seed(seed))
    return sampling.sample(d, noise, d.condition(PROMPT, ""), steps=steps, guidance=guidance)


def animatediff_pipeline(model):
    d = model.denoiser
    return AnimateDiffPipeline(
        vae=model.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, motion_adapter=None,
        scheduler=d.new_scheduler(),
    )  # fmt: skip


def reference(pipe, frames, steps, guidance, seed=0):
    return pipe(
        prompt=PROMPT, num_frames=frames, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed), output_type="latent",
    ).frames  # fmt: skip


def test_modelscope_equals_text_to_video_pipeline(vdms):
    model = vdms["modelscope"]
    d = model.denoiser
    pipe = TextToVideoSDPipeline(vae=model.codec.vae, text_encoder=d.text_encoder, tokenizer=d.tokenizer, unet=d.unet, scheduler=d.new_scheduler())
    torch.testing.assert_close(ours(model, 4, 3, 7.5), reference(pipe, 4, 3, 7.5), **TOL)


def test_modelscope_is_not_zeroscope(vdms):
    assert not torch.allclose(ours(vdms["modelscope"], 2, 2, 7.5), ours(vdms["zeroscope"], 2, 2, 7.5))


def test_animatediff_equals_animatediff_pipeline(vdms):
    model = vdms["animatediff"]
    assert type(model.denoiser.unet).__name__ == "UNetMotionModel"
    torch.testing.assert_close(ours(model, 4, 3, 7.5), reference(animatediff_pipeline(model), 4, 3, 7.5), **TOL)


def test_animatediff_motion_modules_mix_frames(vdms):
    """Frame 0's noise prediction depends on the other frames only through the motion modules."""
    d = vdms["animatediff"].denoiser
    cond = d.condition(PROMPT, "")
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, :, 2] = torch.randn(1, 4, 8, 8)
    assert not torch.allclose(d.predict_noise(x, 500, cond, 7.5)[:, :, 0], d.predict_noise(y, 500, cond, 7.5)[:, :, 0])


def test_lightning_equals_animatediff_pipeline_with_euler_trailing(vdms):
    model = vdms["animatediff-lightning"]
    scheduler = model.denoiser.scheduler
    assert isinstance(scheduler, EulerDiscreteScheduler)
    assert scheduler.config.timestep_spacing == "trailing" and scheduler.config.beta_schedule == "linear"
    assert scheduler.init_noise_sigma != 1
    torch.testing.assert_close(ours(model, 4, 4, 1.0), reference(animatediff_pipeline(model), 4, 4, 1.0), **TOL)


def test_lightning_checkpoints_differ():
    four, eight = load_tiny("animatediff-lightning"), load_tiny("animatediff-lightning", checkpoint_steps=8)
    a, b = four.denoiser.unet.state_dict(), eight.denoiser.unet.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if "motion_modules" in k)


@pytest.mark.parametrize("vdm", VDMS)
def test_mixed_inversion_runs_with_each_vdm(vdm, vdms, canny, source_frames):
    lightning = vdm == "animatediff-lightning"
    steps, guidance = (4, 1.0) if lightning else (3, 7.5)
    result, counter, _ = run_bridge(canny, vdms[vdm], source_frames, vdm_steps=steps, vdm_guidance=guidance, mixing_ratio=0.5)
    assert result.latents.shape == (1, 4, 3, 8, 8) and torch.isfinite(result.latents).all()
    guidance_factor = 1 if lightning else 2  # Lightning samples without CFG
    # video inversion (no CFG) + temporal smoothing, over 3 frames per call
    assert counter.calls["vdm"] == 2 * steps
    assert counter.frame_evals["vdm"] == steps * 3 + steps * 3 * guidance_factor


def cli(*args):
    from click.testing import CliRunner

    from vsynth.cli import cli as command

    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.mark.parametrize("vdm", VDMS)
def test_plain_text_to_video_from_the_cli(vdm, tmp_path):
    import json

    out = tmp_path / "out"
    steps = [] if vdm == "animatediff-lightning" else ["--steps", 2]  # Lightning: its checkpoint's 4
    result = cli("run", "--tiny", "--vdm", vdm, "--prompt", PROMPT, "--frames", 2, "--height", 64, "--width", 64, *steps, "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"video.mp4", "video.gif", "grid.png", "run.json"}
    record = json.loads((out / "run.json").read_text())
    assert record["bridge"]["name"] == "none" and record["task"] == "text-to-video" and "idm" not in record["models"]
    assert record["nfe"] == {"vdm": record["sampling"]["vdm_steps"]}


@pytest.mark.parametrize("vdm", VDMS)
def test_controlnet_mixed_inversion_from_the_cli(vdm, tmp_path):
    from tests.conftest import SAMPLE_VIDEO

    out = tmp_path / "out"
    result = cli("run", "--tiny", "--idm", "controlnet-canny", "--vdm", vdm, "--bridge", "mixed-inversion", "--video", SAMPLE_VIDEO, "--prompt", PROMPT, "--frames", 2, "--height", 64, "--width", 64, "--steps", 2, "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "idm_frames.mp4").is_file() and (out / "video.mp4").is_file()


def test_plain_text_to_video_uses_the_vdm_native_size(tmp_path):
    import json

    result = cli("run", "--tiny", "--vdm", "zeroscope", "--prompt", PROMPT, "--frames", 1, "--steps", 1, "--quiet", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert (record["height"], record["width"]) == (320, 576)


def test_lightning_refuses_steps_its_checkpoint_was_not_distilled_for(tmp_path):
    result = cli("run", "--tiny", "--vdm", "animatediff-lightning", "--prompt", PROMPT, "--steps", 8, "--out", tmp_path / "o")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "4-step checkpoint samples with exactly 4 steps, not 8" in line and "checkpoint_steps=8" in line
    assert not (tmp_path / "o").exists()


def test_lightning_defaults_to_its_checkpoint_steps_and_no_cfg():
    from vsynth.core.run.config import make_config
    from vsynth.core.run.pipeline import plan_run

    config = dict(vdm="animatediff-lightning", prompt=PROMPT, tiny=True)
    plan = plan_run(make_config(dict(config, options={"checkpoint_steps": 8})))
    assert (plan.sampling.vdm_steps, plan.sampling.vdm_guidance) == (8, 1.0)
    # with an IDM, --steps is the IDM's; the Lightning VDM keeps its checkpoint's steps
    from tests.conftest import SAMPLE_VIDEO

    plan = plan_run(make_config(dict(config, idm="controlnet-canny", video=SAMPLE_VIDEO, steps=30)))
    assert (plan.sampling.steps, plan.sampling.vdm_steps) == (30, 4)


@pytest.mark.parametrize("vdm", ["animatediff", "animatediff-lightning"])
def test_windows_beyond_the_motion_window_are_refused_but_long_clips_are_not(vdm, tmp_path):
    from vsynth.core.run.config import make_config
    from vsynth.core.run.pipeline import plan_run

    plan_run(make_config(dict(vdm=vdm, prompt=PROMPT, tiny=True, frames=64)))  # in windows of 16
    result = cli("run", "--tiny", "--vdm", vdm, "--prompt", PROMPT, "--frames", 64, "-o", "window=33", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "at most 32 frames" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bridge", "none", "--idm", "controlnet-canny"], "runs the video model alone"),
        (["--idm", "controlnet-canny"], "needs --video or --condition-video"),
        (["--bridge", "mixed-inversion"], "needs an image model"),
    ],
)
def test_bridge_inputs_are_checked(args, message, tmp_path):
    result = cli("run", "--tiny", "--vdm", "zeroscope", "--prompt", PROMPT, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2 and message in result.stderr

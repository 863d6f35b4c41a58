"""CogVideoX 2b and 5b on the tiny models: equal to CogVideoXPipeline (DDIM; DPM with dynamic guidance) and to
CogVideoXVideoToVideoPipeline, in every bridge, with the frame and size rules of the real checkpoints."""

import json

import pytest
import torch
from PIL import Image

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.core.media.video import read_video
from vsynth.tiny import tiny_weights

TINY = dict(tiny=True, frames=9, height=64, width=64, steps=3, prompt="a red ball", seed=11)
PIPELINE = dict(prompt="a red ball", height=64, width=64, num_frames=9, num_inference_steps=3, output_type="latent")


def pipeline(cls_name: str, tiny: str, scheduler: str | None = None):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(tiny_weights(tiny)).to(torch.float32)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe


def as_ours(frames: torch.Tensor) -> torch.Tensor:
    """CogVideoX's pipelines return latents (B, F, C, H, W); vsynth's are (B, C, F, H, W)."""
    return frames.permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize(
    "name, scheduler, dynamic",
    [("cogvideox-2b", None, False), ("cogvideox-5b", "CogVideoXDPMScheduler", True)],  # 5b: THUDM's DPM, dynamic guidance, RoPE
)
def test_text_to_video_equals_cogvideox_pipeline(name, scheduler, dynamic):
    options = {"dynamic_cfg": True} if dynamic else {}
    ours = vsynth.run(vdm=name, bridge="none", vdm_scheduler="dpm++" if scheduler else None, options=options, **TINY)
    theirs = pipeline("CogVideoXPipeline", name, scheduler)(**PIPELINE, use_dynamic_cfg=dynamic, generator=torch.Generator().manual_seed(11)).frames
    torch.testing.assert_close(ours.latents, as_ours(theirs), rtol=1e-4, atol=1e-4)


def test_vdm_only_equals_cogvideox_video_to_video_pipeline():
    """Its source encoded as a sample drawn before the noise, and dynamic guidance counting the steps that run (2 of 3)."""
    options = {"t2v_strength": 0.7, "dynamic_cfg": True}
    ours = vsynth.run(vdm="cogvideox-2b", bridge="vdm-only", video=SAMPLE_VIDEO, stride=1, options=options, **TINY).latents
    frames = read_video(SAMPLE_VIDEO, frames=9, stride=1, size=(64, 64)).frames
    settings = {k: v for k, v in PIPELINE.items() if k != "num_frames"}  # the video's frames
    theirs = pipeline("CogVideoXVideoToVideoPipeline", "cogvideox-2b")(
        **settings, video=[Image.fromarray(f) for f in frames], strength=0.7, use_dynamic_cfg=True, generator=torch.Generator().manual_seed(11)
    ).frames
    torch.testing.assert_close(ours, as_ours(theirs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "vdm, args",
    [("cogvideox-2b", ["--idm", "controlnet-canny", "--bridge", "mixed-inversion", "--video", SAMPLE_VIDEO, "--stride", "2"]),
     ("cogvideox-5b", ["--idm", "sd15", "--bridge", "encapsulated"])],
)  # fmt: skip
def test_every_output_of_a_composed_run(vdm, args, tmp_path):
    from vsynth.testing import run_cli

    out = tmp_path / "out"
    result = run_cli("run", "--tiny", "--vdm", vdm, *map(str, args), "--frames", "9", "--height", "64", "--width", "64", "--steps", "4",
                     "--prompt", "a red ball", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = {p.name for p in out.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "run.json"} <= files
    assert ("idm_frames.mp4" in files) == ("mixed-inversion" in args) and ("t2v_frames.mp4" in files) == ("--video" not in args)
    record = json.loads((out / "run.json").read_text())
    assert record["models"]["vdm"]["sampling"]["process"] == "vp-v"
    assert record["models"]["vdm"]["sampling"]["scheduler"] == "CogVideoXDDIMScheduler"
    assert record["codecs"]["vdm"]["decoded_frames"] in (9, 18)  # 3 latent frames decode to the 9 frames of the run (once or twice)
    assert record["frame_evals"]["vdm"] % 3 == 0  # the transformer's (B, F, C, H, W) counted by its 3 latent frames


def test_frames_the_vae_cannot_return_and_sizes_off_the_patch_grid_are_rounded_or_refused():
    """The VAE decodes 2k latent frames to 8k frames: a clip holds 1 + 8k frames; 2x2 patches of 8x latents: sides of 16k."""
    with pytest.raises(vsynth.errors.VsynthInputError, match="--frames 13: cogvideox-2b's latent space holds 1 \\+ 8k frames"):
        vsynth.run(vdm="cogvideox-2b", bridge="none", fit="strict", **{**TINY, "frames": 13})
    with pytest.raises(vsynth.errors.VsynthInputError, match="multiples of 16 pixels"):
        vsynth.run(vdm="cogvideox-5b", bridge="none", fit="strict", **{**TINY, "height": 72})


def test_a_named_solver_keeps_the_snr_shifted_training_schedule():
    """diffusers' DDIM or Euler know no snr_shift_scale: ddim and dpm++ are CogVideoX's own schedulers, others get its betas."""
    from vsynth.core.diffusion import solvers
    from vsynth.testing import load_tiny_model

    d = load_tiny_model("cogvideox-2b").denoiser
    base = d.scheduler
    for name, cls in (("ddim", "CogVideoXDDIMScheduler"), ("dpm++", "CogVideoXDPMScheduler"), ("euler", "EulerDiscreteScheduler")):
        d.scheduler = solvers.build(name, base)
        assert type(d.scheduler).__name__ == cls
        torch.testing.assert_close(d.scheduler.alphas_cumprod[:-1].double(), base.alphas_cumprod[:-1].double(), rtol=0, atol=1e-6)
        d.scheduler = base


def test_long_clips_go_in_windows_of_latent_frames():
    """17 frames are 5 latent frames: windows of 3 latent frames sharing 1 cover them; a window beyond the trained 13 is refused."""
    settings = {**TINY, "frames": 17, "height": 32, "width": 32, "steps": 2}
    windowed = vsynth.run(vdm="cogvideox-2b", bridge="none", options={"window": 3, "overlap": 1}, **settings)
    assert windowed.frames.shape[0] == 17 and torch.isfinite(windowed.latents).all()
    whole = vsynth.run(vdm="cogvideox-2b", bridge="none", **settings)  # 5 latent frames fit the default window of 13
    assert not torch.allclose(windowed.latents, whole.latents, atol=1e-3)
    with pytest.raises(vsynth.errors.InvalidParamsError, match="window"):
        vsynth.run(vdm="cogvideox-2b", bridge="none", options={"window": 14}, **settings)

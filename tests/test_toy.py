"""The toy world: its clips and ground truth from the CLI, and runs on its shipped trained models."""

import json

import pytest
from click.testing import CliRunner

from vsynth.cli import cli
from vsynth.toy import world
from vsynth.toy.world import make_clip, words_outside_vocabulary


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_clips_are_seeded_and_described():
    a, b = make_clip(3, frames=4), make_clip(3, frames=4)
    assert (a.frames == b.frames).all() and a.caption == b.caption
    assert a.caption.startswith("a ") and a.caption.endswith(" background")
    assert words_outside_vocabulary(a.caption) == []
    assert words_outside_vocabulary("a red corgi on a white beach") == ["corgi", "beach"]


def test_toy_examples_writes_clips_with_their_ground_truth(tmp_path):
    result = invoke("toy", "examples", tmp_path / "clips", "--count", 2, "--frames", 4)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    path, caption = lines[0].split("\t")
    assert json.loads((tmp_path / "clips" / "toy0.json").read_text())["caption"] == caption == make_clip(0, frames=4, n_shapes=1).caption
    assert (tmp_path / "clips" / "toy1.mp4").is_file()


def test_the_controlnet_fine_tune_keeps_its_edges_and_exports_a_controlnet(tmp_path):
    """vsynth.toy.tune_controlnet: the edge maps stored as bits come back as the canny maps they were made from, and a
    run of a few steps from the shipped slot exports a ControlNet that loads (the shipped fine-tune's command, shortened)."""
    pytest.importorskip("cv2")
    from vsynth.toy import shipped, tune_controlnet
    from vsynth.toy.train import canny

    if "controlnet-canny" not in shipped.toy_models():
        pytest.skip("the toy ControlNet weights are not installed")
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    tune_controlnet.main(["--work", str(tmp_path), "--clips", "1", "--steps", "2", "--batch", "2", "--export-every", "100"])
    frames = torch.load(tmp_path / "frames.pt")
    clip = world.make_clip(tune_controlnet.RECIPE["seed"] * 10_000_000, frames=8, size=64)
    expected = torch.from_numpy(canny(clip.frames)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(tune_controlnet.edge_maps(frames["edges"], frames["size"]), expected)
    assert frames["latents"].shape == (8, 4, 16, 16) and frames["captions"] == [clip.caption] * 8

    def config(folder):
        return {k: v for k, v in ControlNetModel.load_config(folder).items() if not k.startswith("_")}

    exported = tmp_path / "controlnet-2"
    assert config(exported) == config(shipped.WEIGHTS_DIR / "controlnet-canny")
    assert {t.dtype for t in load_file(exported / "diffusion_pytorch_model.safetensors").values()} == {torch.float16}  # shipped as float16


def test_the_zeroscope_fine_tunes_inversion_points_are_mixed_inversions_own():
    """vsynth.toy.tune_zeroscope --invert-weight trains at the latents of Mixed Inversion's image side: its trajectory
    ends where vsynth's BIVDiff inversion (the toy SD1.5, the empty prompt) ends, and names the timesteps the smoothing
    evaluates each latent at (the next one up; the last, re-noised to 998, at the first smoothing step's)."""
    from vsynth.toy import shipped

    if not {"sd15", "zeroscope"} <= set(shipped.toy_models()):
        pytest.skip("the toy SD1.5 and ZeroScope weights are not installed")
    import torch
    from diffusers import DDIMScheduler

    from vsynth.core.diffusion import sampling
    from vsynth.core.diffusion.inputs import Conditioning
    from vsynth.plugins.idm.stable_diffusion import FrameDenoiser
    from vsynth.toy import tune_zeroscope
    from vsynth.toy.train import DDIM
    from vsynth.toy.tune_controlnet import load_sd15

    unet, _, te, tok = load_sd15()
    scheduler = DDIMScheduler(**DDIM)
    empty = te(tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids)[0].detach()
    latents = torch.randn((1, 4, 2, 16, 16), generator=torch.Generator().manual_seed(0))
    trajectory, evaluated = tune_zeroscope.bivdiff_trajectories(unet, empty, latents, scheduler.alphas_cumprod, steps=5)
    expected = sampling.bivdiff_invert(FrameDenoiser(unet, scheduler, tok, te), latents, Conditioning(text=empty), steps=5)
    assert trajectory.shape == (1, 5, 4, 2, 16, 16)
    torch.testing.assert_close(trajectory[:, -1], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(trajectory[:, 0], sampling.bivdiff_invert(FrameDenoiser(unet, scheduler, tok, te), latents, Conditioning(text=empty), steps=1,
                                                                          max_timestep=201), atol=1e-4, rtol=1e-4)  # the first step alone: 1 to 201
    assert evaluated.tolist() == [201, 401, 601, 801, 801]
    torch.testing.assert_close(tune_zeroscope.bivdiff_trajectories(unet, empty, latents, scheduler.alphas_cumprod, steps=5, batch=1)[0], trajectory)

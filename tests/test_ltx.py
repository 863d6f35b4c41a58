"""LTX-Video on the tiny model: equal to LTXPipeline, and to LTXImageToVideoPipeline when holding a first frame; in
every bridge, with the frame and size rules of the real checkpoint."""

import json

import pytest
import torch

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.core.media.video import read_video
from vsynth.tiny import tiny_weights

TINY = dict(tiny=True, frames=9, height=64, width=64, steps=3, prompt="a red ball", seed=11, stride=2)
PIPELINE = dict(prompt="a red ball", height=64, width=64, num_frames=9, num_inference_steps=3, output_type="latent")
LATENT = (2, 2, 2)  # latent frames, height, width of 9 frames at 64x64: 1 + 8 frames, 32x


@pytest.fixture(scope="module")
def pipe():
    import diffusers

    return diffusers.LTXPipeline.from_pretrained(tiny_weights("ltx-video"))


def test_text_to_video_equals_ltx_pipeline(pipe):
    """Guidance 3 (LTXPipeline's default): the batched classifier-free pair, the token-count shift and the packing."""
    ours = vsynth.run(vdm="ltx-video", bridge="none", **TINY).latents
    packed = pipe(**PIPELINE, generator=torch.Generator().manual_seed(TINY["seed"])).frames
    theirs = pipe._unpack_latents(packed, *LATENT, 1, 1)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_holding_the_source_first_frame_equals_ltx_image_to_video_pipeline(pipe):
    """-o first_frame=source: the first latent frame held at the source's first frame with timestep 0 on its tokens.

    LTXImageToVideoPipeline samples its image's latent from the VAE's distribution with the run's generator; vsynth
    holds the distribution's mean (deterministic, as WanImageToVideoPipeline's "argmax"). So the pipeline is given
    the mean-latent start it would build from that image and the same noise, and the loops are compared."""
    from diffusers import LTXImageToVideoPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_image2video import retrieve_latents
    from PIL import Image

    ours = vsynth.run(vdm="ltx-video", bridge="none", video=SAMPLE_VIDEO, options={"first_frame": "source"}, **TINY).latents
    i2v = LTXImageToVideoPipeline(**pipe.components)
    first = read_video(SAMPLE_VIDEO, frames=1, stride=2, size=(64, 64)).frames[0]
    image = i2v.video_processor.preprocess(Image.fromarray(first), 64, 64).unsqueeze(2)
    with torch.no_grad():
        held = i2v._normalize_latents(retrieve_latents(i2v.vae.encode(image), sample_mode="argmax"), i2v.vae.latents_mean, i2v.vae.latents_std)
    start = torch.randn((1, 128, *LATENT), generator=torch.Generator().manual_seed(TINY["seed"]))
    start[:, :, :1] = held
    packed = i2v(**PIPELINE, image=Image.fromarray(first), latents=i2v._pack_latents(start), generator=torch.Generator().manual_seed(0)).frames
    theirs = i2v._unpack_latents(packed, *LATENT, 1, 1)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    plain = vsynth.run(vdm="ltx-video", bridge="none", **TINY).latents
    assert not torch.allclose(ours[:, :, 1:], plain[:, :, 1:], atol=1e-3)  # the held frame steers the others


def test_keyframes_equal_ltx_condition_pipeline(pipe, monkeypatch):
    """-o keyframe_stride=8 with the first frame held: LTXConditionPipeline with images at frame indices 0 and 8.

    Its schedule is given as the pipeline's timesteps on a scheduler without the resolution shift (LTXConditionPipeline
    sets timesteps without ``mu``, which the 0.9.1 scheduler config needs); its conditions are encoded to their mean,
    as vsynth encodes them, its per-step noise on the held tokens is off (``image_cond_noise_scale=0``) and it encodes
    128 prompt tokens as LTXPipeline (its own default is 256)."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline
    from diffusers.pipelines.ltx import pipeline_ltx_condition
    from PIL import Image

    from vsynth.core.diffusion import sampling
    from vsynth.testing import load_tiny_model

    frames = read_video(SAMPLE_VIDEO, frames=9, stride=2, size=(64, 64)).frames
    flat = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, use_dynamic_shifting=False, shift_terminal=None)
    model = load_tiny_model("ltx-video", first_frame="idm", keyframe_stride=8)
    d = model.ltx
    d.scheduler, d.tokens = flat, 8
    model.condition_on_frames(frames)
    assert [index for index, _ in d.keyframes] == [8]
    cond = d.condition("a red ball")
    noise = sampling.initial_noise(d, (1, 128, *LATENT), torch.Generator().manual_seed(TINY["seed"]))
    ours = sampling.sample(d, noise, cond, steps=3, guidance=3.0)

    monkeypatch.setattr(pipeline_ltx_condition, "retrieve_latents", lambda output, generator=None, sample_mode="sample": output.latent_dist.mode())
    condition = LTXConditionPipeline(**{**pipe.components, "scheduler": flat})
    images = [pipeline_ltx_condition.LTXVideoCondition(image=Image.fromarray(frames[i]), frame_index=i) for i in (0, 8)]
    theirs = condition(**PIPELINE, conditions=images, timesteps=list(np.linspace(1.0, 1 / 3, 3) * 1000), guidance_scale=3.0,
                       image_cond_noise_scale=0.0, max_sequence_length=128, generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    d.keyframes = []
    assert not torch.allclose(ours, sampling.sample(d, noise, cond, steps=3, guidance=3.0), atol=1e-3)  # the keyframe steers


@pytest.mark.parametrize("requested, held, why", [(20, 9, "the clip has 9"), (5, 1, "whole latent frames are 1 + 8k"), (9, 9, None)])
def test_condition_frames_it_cannot_hold_are_said(requested, held, why):
    """-o condition_frames above the clip's frames, or between whole latent frames, was cut without a word."""
    import warnings

    from vsynth.testing import load_tiny_model

    frames = read_video(SAMPLE_VIDEO, frames=9, stride=2, size=(64, 64)).frames
    model = load_tiny_model("ltx-video", first_frame="idm", condition_frames=requested)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.condition_on_frames(frames)
    assert model.ltx.held.shape[2] == 1 + (held - 1) // 8
    said = [str(w.message) for w in caught if issubclass(w.category, vsynth.errors.VsynthWarning)]
    assert said == ([f"ltx-video: -o condition_frames={requested} holds the first {held} frame{'s' * (held > 1)} ({why})"] if why else [])


def test_a_warning_raised_while_the_model_runs_is_one_line_of_the_cli(tmp_path):
    """`vsynth run` printed a model's warning in Python's form (file, line, source line) when it came after planning."""
    from vsynth.testing import run_cli

    result = run_cli("run", "--tiny", "--vdm", "ltx-video", "--bridge", "none", "--video", SAMPLE_VIDEO, "-o", "first_frame=source",
                     "-o", "condition_frames=20", "--frames", "9", "--stride", "2", "--height", "64", "--width", "64", "--steps", "2",
                     "--prompt", "a ball", "--out", tmp_path / "out", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == ["Warning: ltx-video: -o condition_frames=20 holds the first 9 frames (the clip has 9)"]


@pytest.mark.parametrize(
    "idm, bridge, video", [(None, "none", False), ("controlnet-canny", "mixed-inversion", True), ("sd15", "encapsulated", False)]
)
def test_every_output_of_a_run(idm, bridge, video, tmp_path):
    settings = dict(TINY, vdm="ltx-video", bridge=bridge, out=tmp_path / "out", **({"idm": idm} if idm else {}),
                    **({"video": SAMPLE_VIDEO} if video else {}))  # fmt: skip
    if bridge == "mixed-inversion":  # two latent spaces: only the video side inverts, with a notice
        with pytest.warns(vsynth.errors.VsynthWarning, match="different latent spaces"):
            result = vsynth.run(**settings, options={"vdm.first_frame": "idm"})
    else:
        result = vsynth.run(**settings)
    files = {p.name for p in result.out_dir.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "run.json"} <= files
    assert ("idm_frames.mp4" in files) == (bridge == "mixed-inversion") and ("t2v_frames.mp4" in files) == (bridge == "encapsulated")
    record = json.loads((result.out_dir / "run.json").read_text())
    assert record["models"]["vdm"]["sampling"]["process"] == "flow"
    assert record["models"]["vdm"]["sampling"]["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert result.frames.shape == (9, 64, 64, 3)


def test_mixed_inversion_feeds_the_idms_first_frame():
    from vsynth.plugins.vdm.ltx import LTXDenoiser

    held = []
    real = LTXDenoiser.finish

    def spy(self, latents):
        held.append(self.held is not None)
        return real(self, latents)

    settings = dict(idm="controlnet-canny", vdm="ltx-video", bridge="mixed-inversion", video=SAMPLE_VIDEO, **TINY)
    with pytest.MonkeyPatch.context() as patch, pytest.warns(vsynth.errors.VsynthWarning):
        patch.setattr(LTXDenoiser, "finish", spy)
        fed = vsynth.run(**settings, options={"vdm.first_frame": "idm"})
        held_with, held[:] = list(held), []
        plain = vsynth.run(**settings)
    assert held_with and all(held_with) and not any(held)
    assert not torch.allclose(fed.latents, plain.latents, atol=1e-3)


def test_frame_and_size_rules_of_the_real_vae_are_checked_before_loading():
    with pytest.raises(vsynth.errors.VsynthInputError, match="--frames 12: ltx-video's latent space holds 1 \\+ 8k frames"):
        vsynth.run(vdm="ltx-video", bridge="none", fit="strict", **{**TINY, "frames": 12})
    with pytest.raises(vsynth.errors.VsynthInputError, match="multiples of 32 pixels"):
        vsynth.run(vdm="ltx-video", bridge="none", fit="strict", **{**TINY, "height": 80})
    with pytest.raises(vsynth.errors.InvalidParamsError, match="first_frame=source holds the first frames at --video's"):
        vsynth.run(vdm="ltx-video", bridge="none", options={"first_frame": "source"}, **TINY)
    with pytest.raises(vsynth.errors.VsynthInputError, match="keyframe_stride takes its keyframes"):
        vsynth.run(vdm="ltx-video", bridge="none", options={"keyframe_stride": 8}, **TINY)
    with pytest.raises(vsynth.errors.InvalidParamsError, match="2 steps or more"):
        vsynth.run(vdm="ltx-video", bridge="none", **{**TINY, "steps": 1})
    with pytest.raises(vsynth.errors.VsynthInputError, match="without -o window"):
        vsynth.run(vdm="ltx-video", bridge="none", video=SAMPLE_VIDEO, options={"first_frame": "source", "window": 9}, **TINY)


def test_listed_with_its_size_and_planned_with_its_whole_clip_decode():
    """`vsynth models` shows the download size; the planner counts the real configs' weights and the VAE decoding all
    257 frames at once."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run.memory import LTX_VAE_DECODE_K, estimate
    from vsynth.testing import run_cli

    listing = json.loads(run_cli("models", "--json").stdout)
    assert next(m for m in listing if m["name"] == "ltx-video")["size_gb"] == 30.5
    spec = get_registry().model("ltx-video")
    sources = {"vdm": {"vdm": "Lightricks/LTX-Video"}}
    plan = estimate({"vdm": spec}, sources, {"vdm": spec.params()}, frames=257, height=480, width=704, guidance={"vdm": 3.0},
                    dtype="bfloat16", device="mps", offload="none")  # fmt: skip
    assert plan.activations == LTX_VAE_DECODE_K * 257 * 480 * 704 * 2
    # the real configs' parameter counts in bfloat16 (the VAE counted at 4 bytes: the planner's upcast bound)
    assert plan.weights == 2 * (1923385472 + 4762310656) + 4 * 934976434

"""Wan 2.x and VACE on the tiny models: equal to their diffusers pipelines, in every bridge, with the frame rules
and the expert switch of the real checkpoints."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.core.media.video import read_video
from vsynth.tiny import tiny_weights

TINY = dict(tiny=True, frames=5, height=64, width=64, steps=3, prompt="a red ball", seed=11)
PIPELINE = dict(prompt="a red ball", height=64, width=64, num_frames=5, num_inference_steps=3, output_type="latent")


def pipeline(cls_name: str, tiny: str):
    import diffusers

    return getattr(diffusers, cls_name).from_pretrained(tiny_weights(tiny)).to(torch.float32)


def frames():
    return read_video(SAMPLE_VIDEO, frames=5, stride=4, size=(64, 64)).frames


@pytest.mark.parametrize("name, tiny", [("wan2.1-t2v-1.3b", "wan2.1-t2v"), ("wan2.2-ti2v-5b", "wan2.2-ti2v"), ("wan2.2-t2v-a14b", "wan2.2-t2v-a14b")])
def test_text_to_video_equals_wan_pipeline(name, tiny):
    ours = vsynth.run(vdm=name, bridge="none", **TINY).latents
    theirs = pipeline("WanPipeline", tiny)(**PIPELINE, generator=torch.Generator().manual_seed(TINY["seed"])).frames
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_vdm_only_equals_wan_video_to_video_pipeline():
    ours = vsynth.run(vdm="wan2.1-t2v-1.3b", bridge="vdm-only", video=SAMPLE_VIDEO, options={"t2v_strength": 0.7}, **TINY).latents
    pipe = pipeline("WanVideoToVideoPipeline", "wan2.1-t2v")
    video = [Image.fromarray(f) for f in frames()]
    settings = {k: v for k, v in PIPELINE.items() if k != "num_frames"}  # the video's frames
    theirs = pipe(**settings, video=video, strength=0.7, generator=torch.Generator().manual_seed(TINY["seed"])).frames
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)


def test_vace_with_canny_control_equals_wan_vace_pipeline():
    from vsynth.plugins.idm.detectors import canny_maps

    ours = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", video=SAMPLE_VIDEO, **TINY).latents
    control = [Image.fromarray(f) for f in canny_maps(frames(), 100, 200)]
    theirs = pipeline("WanVACEPipeline", "wan2.1-vace")(**PIPELINE, video=control, generator=torch.Generator().manual_seed(TINY["seed"])).frames
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    plain = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", **TINY).latents
    assert not torch.allclose(ours, plain, atol=1e-3)  # the control reaches the model



def test_vace_with_a_reference_image_equals_wan_vace_pipeline(tmp_path):
    """The reference takes a latent frame of its own before the clip (as WanVACEPipeline prepends it), dropped on decoding."""
    from vsynth.plugins.idm.detectors import canny_maps

    reference = tmp_path / "reference.png"
    Image.fromarray(frames()[2][:48]).save(reference)  # another aspect than the clip's: fitted and padded as diffusers does
    result = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", video=SAMPLE_VIDEO, options={"reference": str(reference)}, **TINY)
    control = [Image.fromarray(f) for f in canny_maps(frames(), 100, 200)]
    theirs = pipeline("WanVACEPipeline", "wan2.1-vace")(**PIPELINE, video=control, reference_images=[Image.open(reference)],
                                                         generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip
    assert result.latents.shape[2] == 3  # the reference's latent frame, then the clip's two
    torch.testing.assert_close(result.latents, theirs, rtol=1e-4, atol=1e-4)
    assert result.frames.shape == (5, 64, 64, 3)
    with pytest.raises(vsynth.errors.InvalidParamsError, match=r"^-o reference=\S+: no such image file$"):  # said once
        vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", options={"reference": str(tmp_path / "none.png")}, **TINY)
    (tmp_path / "page.png").write_text("<html>not found</html>")  # a saved error page: refused before loading
    with pytest.raises(vsynth.errors.InvalidParamsError, match="cannot be read as an image"):
        vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", options={"reference": str(tmp_path / "page.png")}, **TINY)
    with pytest.raises(vsynth.errors.InvalidParamsError, match="-o window=5: VACE's control follows the whole clip"):
        vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", options={"window": 5}, **TINY)


@pytest.mark.parametrize(
    ("inputs", "line"),
    [
        (dict(outpaint="horizontal"), "mark what VACE regenerates in the frames: give --video"),
        (dict(video=SAMPLE_VIDEO, outpaint="horizontal", options={"control": "depth"}), "-o control=depth is what VACE follows without"),
        (dict(condition_video=SAMPLE_VIDEO, options={"control": "depth"}), "-o control says how VACE makes its control maps from --video, "
         "and --condition-video gives the maps precomputed"),
        (dict(video=SAMPLE_VIDEO, outpaint="horizontal", options={"low_threshold": 10}), "-o low_threshold says how .* fills the frames"),
        (dict(video=SAMPLE_VIDEO, options={"control": "depth", "high_threshold": 90}), "-o high_threshold is for -o control=canny"),
    ],
    ids=["a fill without frames", "control with a fill", "control with given maps", "thresholds with a fill", "thresholds with depth"],
)
def test_vace_refuses_inputs_it_would_leave_unused_before_loading(inputs, line):
    """These ran: an outpainting of nothing, a control the fill ignored."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run

    with pytest.raises(vsynth.errors.InvalidParamsError, match=line):
        plan_run(RunConfig(vdm="wan2.1-vace-1.3b", bridge="none", **inputs, **TINY))


@pytest.mark.parametrize(
    ("inputs", "task"),
    [(dict(), "text-to-video"), (dict(video=SAMPLE_VIDEO), "controllable-generation"), (dict(video=SAMPLE_VIDEO, outpaint="horizontal"), "outpainting")],
)
def test_vace_records_the_task_its_inputs_make(inputs, task):
    """run.json said text-to-video for every VACE run: its bridge is none, and the VDM alone fills or follows."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run

    assert plan_run(RunConfig(vdm="wan2.1-vace-1.3b", bridge="none", **inputs, **TINY)).task == task


def test_vace_writes_the_maps_it_follows_and_is_measured_against_them(tmp_path):
    """Its canny maps went unwritten (no condition.mp4, no grid row) and unmeasured (no edge F1)."""
    result = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", video=SAMPLE_VIDEO, out=tmp_path / "out", **TINY)
    assert (tmp_path / "out" / "condition.mp4").is_file() and "final" in result.record["metrics"]["edge_f1"]
    assert result.record["codecs"]["vdm"]["encoded_frames"] == 10  # the kept and regenerated parts of 5 frames (it read 0)
    filled = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", video=SAMPLE_VIDEO, outpaint="horizontal", out=tmp_path / "fill", **TINY)
    assert "edge_f1" not in filled.record["metrics"]  # a fill follows no maps
    shown = read_video(tmp_path / "fill" / "condition.mp4").frames  # the masked source, as sd-inpaint writes it (it wrote none)
    assert abs(int(shown[0, 2, 32, 0]) - 128) <= 3 and abs(int(shown[0, 32, 32, 0]) - int(frames()[0, 32, 32, 0])) <= 12


def test_vace_follows_depth_from_the_idms_own_detector():
    from vsynth.plugins.idm.detectors import DepthEstimator

    result = vsynth.run(vdm="wan2.1-vace-1.3b", bridge="none", video=SAMPLE_VIDEO, options={"control": "depth"}, **TINY)
    depth = DepthEstimator(str(tiny_weights("depth-estimator")), torch.device("cpu"))(frames())
    theirs = pipeline("WanVACEPipeline", "wan2.1-vace")(**PIPELINE, video=[Image.fromarray(f) for f in depth],
                                                         generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip
    torch.testing.assert_close(result.latents, theirs, rtol=1e-4, atol=1e-4)


COMPOSED = [
    *((vdm, idm, bridge, video) for vdm in ("wan2.1-t2v-1.3b", "wan2.2-ti2v-5b", "wan2.1-vace-1.3b")
      for idm, bridge, video in (("controlnet-canny", "mixed-inversion", True), ("controlnet-canny", "encapsulated", True),
                                 ("sd15", "encapsulated", False))),
    # flow with flow, two latent spaces (FLUX's and Wan's)
    ("wan2.1-t2v-1.3b", "flux-canny", "mixed-inversion", True),
    ("wan2.1-t2v-1.3b", "flux-canny", "encapsulated", True),
    ("wan2.1-t2v-1.3b", "flux-dev", "encapsulated", False),
]  # fmt: skip


@pytest.mark.parametrize("vdm, idm, bridge, video", COMPOSED)
def test_every_output_of_a_composed_run(vdm, idm, bridge, video, tmp_path):
    settings = dict(TINY, steps=4, idm=idm, vdm=vdm, bridge=bridge, out=tmp_path / "out", **({"video": SAMPLE_VIDEO} if video else {}))
    with pytest.warns(vsynth.errors.VsynthWarning) if bridge == "mixed-inversion" and idm.startswith("controlnet") else _nothing():  # FLUX asks 0 itself
        result = vsynth.run(**settings)
    files = {p.name for p in result.out_dir.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "run.json"} <= files
    assert ("idm_frames.mp4" in files) == (bridge == "mixed-inversion") and ("t2v_frames.mp4" in files) == (not video)
    record = json.loads((result.out_dir / "run.json").read_text())
    assert record["models"]["vdm"]["sampling"]["process"] == "flow"
    assert record["models"]["vdm"]["sampling"]["scheduler"] == "UniPCMultistepScheduler"
    assert record["codecs"]["vdm"]["encoded_frames"] >= 5  # the IDM's frames transcoded into Wan's latent space
    assert result.frames.shape == (5, 64, 64, 3)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_frames_a_causal_vae_cannot_hold_are_rounded_with_a_notice_or_refused():
    with pytest.warns(vsynth.errors.VsynthWarning, match="holds 1 \\+ 4k frames; running 5"):
        assert vsynth.run(vdm="wan2.1-t2v-1.3b", bridge="none", **{**TINY, "frames": 8}).frames.shape[0] == 5
    with pytest.raises(vsynth.errors.VsynthInputError, match="--frames 8: wan2.1-t2v-1.3b's latent space holds 1 \\+ 4k frames"):
        vsynth.run(vdm="wan2.1-t2v-1.3b", bridge="none", fit="strict", **{**TINY, "frames": 8})
    with pytest.raises(vsynth.errors.VsynthInputError, match="multiples of 32 pixels"):
        vsynth.run(vdm="wan2.2-ti2v-5b", bridge="none", fit="strict", **{**TINY, "height": 80})


def test_the_a14b_experts_switch_at_the_boundary_level_also_when_a_bridge_enters_mid_way():
    """A14B's high-noise expert runs at and above s = 0.875 (level 7), the low-noise one below, whatever step a bridge enters at."""
    from vsynth.core.run.evals import EvalCounter
    from vsynth.testing import load_tiny_model

    model = load_tiny_model("wan2.2-t2v-a14b")
    d = model.denoiser
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, a, k, name=name: seen.append((name, float(k["timestep"][0]))), with_kwargs=True)
             for name, m in (("high", d.unet), ("low", d.transformer_2))]  # fmt: skip
    try:
        from vsynth.core.diffusion import sampling

        schedule = sampling.Schedule(d, 6)
        cond = d.condition("a ball")
        x0 = torch.zeros(1, 16, 2, 8, 8)
        start = 2
        sampling.denoise(schedule, sampling.renoise(d, x0, torch.randn_like(x0), schedule.level(start)), cond, start, guidance=1.0)
    finally:
        for h in hooks:
            h.remove()
    assert [name for name, _ in seen] == ["high" if t >= 875 else "low" for _, t in seen]
    assert {"low"} <= {name for name, _ in seen} and len(seen) == 6 - start
    del EvalCounter


def test_umt5_encodes_each_prompt_of_a_run_once_before_the_transformer_runs():
    """Wan's text encoder (UMT5-XXL, 11 GB) runs for the run's prompts before the bridge, once each, and never again."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import execute, load_models, plan_run
    from vsynth.core.run.progress import Stages

    plan = plan_run(RunConfig(idm="controlnet-canny", vdm="wan2.1-t2v-1.3b", bridge="mixed-inversion", video=SAMPLE_VIDEO,
                              negative_prompt="blurry", **TINY))  # fmt: skip
    loaded = load_models(plan, Stages())
    wan = loaded.models["vdm"].wan
    order = []
    hooks = [wan.text_encoder.register_forward_pre_hook(lambda *a: order.append("text")),
             wan.unet.register_forward_pre_hook(lambda *a: order.append("transformer"))]  # fmt: skip
    try:
        execute(plan, loaded=loaded, write=False)
    finally:
        for h in hooks:
            h.remove()
    assert order[:2] == ["text", "text"] and "text" not in order[2:] and "transformer" in order


def test_ti2v_holding_the_source_first_frame_equals_wan_image_to_video_pipeline():
    ours = vsynth.run(vdm="wan2.2-ti2v-5b", bridge="none", video=SAMPLE_VIDEO, options={"first_frame": "source"}, **TINY).latents
    pipe = pipeline("WanImageToVideoPipeline", "wan2.2-ti2v")
    image = Image.fromarray(frames()[0])
    theirs = pipe(**PIPELINE, image=image, generator=torch.Generator().manual_seed(TINY["seed"])).frames
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    plain = vsynth.run(vdm="wan2.2-ti2v-5b", bridge="none", **TINY).latents
    assert not torch.allclose(ours[:, :, 1:], plain[:, :, 1:], atol=1e-3)  # the held frame steers the others


def test_mixed_inversion_feeds_ti2v_the_idms_first_frame():
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.plugins.vdm.wan import WanDenoiser

    held = []
    real = WanDenoiser.finish

    def spy(self, latents):
        held.append(self.first_frame is not None)
        return real(self, latents)

    settings = dict(idm="controlnet-canny", vdm="wan2.2-ti2v-5b", bridge="mixed-inversion", video=SAMPLE_VIDEO, **TINY)
    with pytest.MonkeyPatch.context() as patch, pytest.warns(vsynth.errors.VsynthWarning):
        patch.setattr(WanDenoiser, "finish", spy)
        fed = vsynth.run(**settings, options={"vdm.first_frame": "idm"})
        held_with, held[:] = list(held), []
        plain = vsynth.run(**settings)
    assert all(held_with) and not any(held)
    assert not torch.allclose(fed.latents, plain.latents, atol=1e-3)
    with pytest.raises(vsynth.errors.InvalidParamsError, match="first_frame=source holds the first frames at --video's"):
        plan_run(RunConfig(vdm="wan2.2-ti2v-5b", bridge="none", options={"first_frame": "source"}, **TINY))  # before loading
    with pytest.raises(vsynth.errors.InvalidParamsError, match="first_frame=idm holds the image model's first frames, and this run has none"):
        plan_run(RunConfig(vdm="wan2.2-ti2v-5b", bridge="vdm-only", video=SAMPLE_VIDEO, options={"first_frame": "idm"}, **TINY))
    with pytest.raises(vsynth.errors.InvalidParamsError, match="which bridge 'idm-then-vdm' does not hand to the video model"):
        plan_run(RunConfig(**{**settings, "bridge": "idm-then-vdm"}, options={"vdm.first_frame": "idm"}))

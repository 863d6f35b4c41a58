"""HunyuanVideo (issue 26): equal to HunyuanVideoPipeline on the tiny weights (a tiny Llama and CLIP built offline),
in every bridge, with the frame and size rules of its VAE and transformer, and the 13B checkpoint's figures
counted on the meta device (it does not fit the machines this is tested on)."""

import json

import pytest
import torch

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.testing import run_cli

TINY = dict(tiny=True, frames=5, height=64, width=64, steps=3, prompt="a red ball", seed=11)
REPO = "hunyuanvideo-community/HunyuanVideo"


def test_text_to_video_equals_hunyuan_video_pipeline(tmp_path):
    from diffusers import HunyuanVideoPipeline

    from vsynth.tiny import tiny_weights

    result = vsynth.run(vdm="hunyuanvideo", bridge="none", out=tmp_path / "out", **TINY)
    pipe = HunyuanVideoPipeline.from_pretrained(tiny_weights("hunyuanvideo")).to(torch.float32)
    theirs = pipe(prompt=TINY["prompt"], height=64, width=64, num_frames=5, num_inference_steps=3, output_type="latent",
                  generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip  (guidance_scale: its default 6.0)
    assert result.latents.shape == (1, 16, 2, 8, 8)
    assert {p.name for p in result.out_dir.iterdir()} == {"video.mp4", "video.gif", "grid.png", "run.json"}
    torch.testing.assert_close(result.latents, theirs, rtol=1e-4, atol=1e-4)
    record = json.loads((result.out_dir / "run.json").read_text())
    assert record["sampling"]["vdm_guidance"] == 6.0 and record["nfe"]["vdm"] == 3  # distilled: one call per step
    assert record["models"]["vdm"]["sampling"]["scheduler_config"]["shift"] == 7.0
    # the embedded guidance reaches the transformer
    other = pipe(prompt=TINY["prompt"], height=64, width=64, num_frames=5, num_inference_steps=3, output_type="latent", guidance_scale=2.0,
                 generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip
    assert not torch.allclose(other, theirs, atol=1e-4)


@pytest.mark.parametrize("idm, bridge, video", [("controlnet-canny", "mixed-inversion", True), ("sd15", "encapsulated", False)])
def test_every_output_of_a_composed_run(idm, bridge, video, tmp_path):
    settings = dict(TINY, idm=idm, vdm="hunyuanvideo", bridge=bridge, out=tmp_path / "out", **({"video": SAMPLE_VIDEO} if video else {}))
    if bridge == "mixed-inversion":
        with pytest.warns(vsynth.errors.VsynthWarning, match="only the video-side inversion runs"):
            result = vsynth.run(**settings)
    else:
        result = vsynth.run(**settings)
    files = {p.name for p in result.out_dir.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "run.json"} <= files
    assert ("idm_frames.mp4" in files) == video and ("t2v_frames.mp4" in files) == (not video)
    record = json.loads((result.out_dir / "run.json").read_text())
    assert record["models"]["vdm"]["sampling"]["process"] == "flow"
    assert record["codecs"]["vdm"]["latent_space"] == "hunyuanvideo-vae" and record["codecs"]["vdm"]["encoded_frames"] >= 5
    assert result.frames.shape == (5, 64, 64, 3)


def test_frames_and_sizes_its_vae_and_patches_cannot_hold_are_rounded_or_refused_before_loading(monkeypatch):
    from vsynth.plugins.vdm.hunyuan import HunyuanVideoModel

    monkeypatch.setattr(HunyuanVideoModel, "load", classmethod(lambda *a: pytest.fail("loaded")))
    with pytest.raises(vsynth.errors.VsynthInputError, match="--frames 8: hunyuanvideo's latent space holds 1 \\+ 4k frames"):
        vsynth.run(vdm="hunyuanvideo", bridge="none", fit="strict", **{**TINY, "frames": 8})
    with pytest.raises(vsynth.errors.VsynthInputError, match="multiples of 16 pixels"):
        vsynth.run(vdm="hunyuanvideo", bridge="none", fit="strict", **{**TINY, "height": 72})
    with pytest.raises(vsynth.errors.VsynthInputError, match="129"):
        vsynth.run(vdm="hunyuanvideo", bridge="none", **{**TINY, "frames": 133})


def test_the_13b_checkpoint_on_the_meta_device_and_in_the_planner():
    """The real configs build the 12.8 B transformer (a third of its width is the 3072-wide stream) and the planner counts
    every component once: the transformer and text encoders at 2 bytes, the VAE at 4 (it may upcast), activations
    TRANSFORMER_K * tokens * 3072 * 2 for the 33 x 45 x 80 tokens of 129 frames at 720x1280."""
    from diffusers import HunyuanVideoTransformer3DModel

    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import memory
    from vsynth.testing.fake_hub import layouts, real_config

    counts = layouts()[REPO]["parameters"]
    with torch.device("meta"):
        transformer = HunyuanVideoTransformer3DModel.from_config(real_config(REPO, "transformer/config.json"))
    assert sum(p.numel() for p in transformer.parameters()) == counts["transformer"]["total"] == 12_821_012_544
    spec = get_registry().model("hunyuanvideo")
    estimate = memory.estimate({"vdm": spec}, {"vdm": {"vdm": REPO}}, {"vdm": spec.params()}, frames=129, height=720, width=1280,
                               guidance={"vdm": 6.0}, dtype="bfloat16", device="cpu", offload="none")  # fmt: skip
    half = sum(counts[c]["total"] for c in ("transformer", "text_encoder", "text_encoder_2")) * 2
    assert estimate.weights == half + counts["vae"]["total"] * 4
    assert estimate.activations == memory.TRANSFORMER_K * 33 * 45 * 80 * 3072 * 2
    assert {p.unit for p in estimate.parts} == {"vdm.unet", "vdm.vae", "vdm.text_encoder", "vdm.text_encoder_2"}


def test_models_lists_it_with_its_size_and_distilled_guidance():
    listing = {r["name"]: r for r in json.loads(run_cli("models", "--json", "--kind", "vdm").stdout)}
    assert listing["hunyuanvideo"]["size_gb"] == 41.9
    shown = run_cli("models", "hunyuanvideo").stdout
    assert "guidance: distilled" in shown and "hunyuanvideo-vae" in shown
